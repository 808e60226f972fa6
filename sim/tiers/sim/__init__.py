"""tiers.sim: simulation backends (MuJoCo embedded by default, Isaac Sim optional) and the kitchen benchmark."""
