"""Errors raised across tiers.

Every error names what is wrong (the file, the field, the value) so that a user can fix it without
reading the source. All of them derive from :class:`TiersError`, so a caller can catch the family.
"""

from __future__ import annotations


class TiersError(Exception):
    """Base class of every error tiers raises on purpose."""


class ConfigError(TiersError, ValueError):
    """A config file, dict or override does not fit its dataclass (unknown key, wrong type, bad value)."""


class ContractError(TiersError, ValueError):
    """A value crossing a tier boundary breaks its contract (shape, dtype, units, finiteness)."""


class EmbodimentMismatchError(ContractError):
    """An observation, action or policy does not fit the robot it is used with."""


class SimulationError(TiersError, RuntimeError):
    """A simulator diverged (NaN/Inf accelerations) or failed; the episode cannot go on."""


class MissingExtraError(TiersError, ImportError):
    """An optional dependency is not installed; the message names the extra that provides it."""
