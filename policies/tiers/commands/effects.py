"""What the open, close and push subtasks achieve, in numbers: the thresholds the kitchen's success predicates
(:func:`tiers.sim.kitchen.predicates.is_open` / ``is_closed`` / ``pushed``) and the mid tier's outcome checks
(:class:`tiers.policies.mid.outcomes.OutcomeChecker`) share, so a subtask sensed done is a subtask scored done.

Openings are fractions of an articulated fixture's joint range: 0 closed .. 1 fully open (drawer: m of
slide, cabinet door: rad of swing, both normalised by their range).
"""

from __future__ import annotations

OPEN_FRACTION = 0.8  # opening at or above which a fixture is open
CLOSED_FRACTION = 0.05  # opening at or below which a fixture is closed
PUSH_DISTANCE = 0.08  # m, least displacement of a pushed object along the push direction
