"""tiers.apps.bench: the ``tiers bench <name>`` benchmarks; each prints its figures and writes JSON."""
