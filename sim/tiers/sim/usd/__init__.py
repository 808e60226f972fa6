"""tiers.sim.usd: the kitchen as a USD stage with UsdPhysics schemas (for Isaac Sim), built on the CPU."""
