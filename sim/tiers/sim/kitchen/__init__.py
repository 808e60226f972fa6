"""tiers.sim.kitchen: the Kitchen-R-like benchmark: vocabulary, layouts, instructions, tasks, predicates."""
