"""The ``tiers`` command: one module per verb (see :mod:`tiers.cli.main`)."""
