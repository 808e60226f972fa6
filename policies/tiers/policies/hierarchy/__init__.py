"""tiers.policies.hierarchy: a high × (mid) × low composition from YAML, run at control rate with live corrections."""
