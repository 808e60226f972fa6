"""tiers.apps.evaluation: Kitchen-R's evaluation modes (planner alone, control alone, integrated), reports, videos."""
