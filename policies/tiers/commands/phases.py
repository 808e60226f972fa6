"""The scripted expert's primitive phases: what the arm is doing at each step, a per-frame dataset column.

The expert (:mod:`tiers.sim.kitchen.expert`) labels every step with one; the language-motion labeler
(:mod:`tiers.datasets.language_motion`) and the Code-as-Policies primitives speak the same words.
"""

from __future__ import annotations

from enum import StrEnum


class Motion(StrEnum):
    """Primitive phase labels carried by every expert step (what the arm is doing)."""

    APPROACH = "approach"  # free-space move toward the next contact
    DESCEND = "descend"  # final straight move onto a grasp
    GRASP = "grasp"  # closing the fingers
    LIFT = "lift"  # raising a grasped object
    TRANSPORT = "transport"  # carrying a grasped object
    LOWER = "lower"  # setting a carried object down
    RELEASE = "release"  # opening the fingers
    RETREAT = "retreat"  # moving away after a release
    PULL = "pull"  # opening an articulation
    PUSH = "push"  # pushing an object or closing an articulation
    IDLE = "idle"  # plan finished or given up: holding still
