"""The colour words of the kitchen: what instructions say and what perception looks for.

The simulator paints objects in these colours (:mod:`tiers.sim.kitchen.layout`); the mid tier's colour
segmentation (:mod:`tiers.policies.mid.perception`) reads them back from RGB images.
"""

from __future__ import annotations

from types import MappingProxyType

# Named colours (RGBA in [0, 1]) objects are painted in; words are what instructions say.
PALETTE: MappingProxyType[str, tuple[float, float, float, float]] = MappingProxyType(
    {
        "red": (0.85, 0.12, 0.1, 1.0),
        "green": (0.2, 0.68, 0.22, 1.0),
        "blue": (0.15, 0.32, 0.88, 1.0),
        "yellow": (0.97, 0.86, 0.12, 1.0),
        "orange": (0.98, 0.52, 0.08, 1.0),
        "purple": (0.56, 0.22, 0.72, 1.0),
        "pink": (0.98, 0.55, 0.75, 1.0),
        "white": (0.95, 0.95, 0.93, 1.0),
        "grey": (0.48, 0.5, 0.52, 1.0),
    }
)
