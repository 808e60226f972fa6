"""tiers.policies: the three tiers (``high``, ``mid``, ``low``) and the hierarchy that composes them."""
