"""What to do after a kitchen subtask failed: the steps that re-plan it from the current state.

The hierarchy runtime senses a subtask's outcome and, when recovery is on, hands a failure it cannot fix by a
retry back to the planner with its reason (``handle_failure(command, reason)``). Every planner that plans in
kitchen subtasks (the grammar planner, the gold plan) re-plans the same way, from the reason alone:

- "the can is not in the hand" (a place the mid tier refused, or one that dropped the object): pick the
  object up first, then put it again;
- "... open it first" (a place into a shut drawer or cabinet): open the target first, then put it;
- anything else (a missed grasp, a drawer left half open): the failed step again.
"""

from __future__ import annotations

from tiers.commands.subtasks import Action, Subtask
from tiers.commands.vocabulary import ARTICULATED


def recovery_steps(failed: Subtask, reason: str) -> list[Subtask]:
    """The steps to put at the front of the plan after ``failed`` did not achieve its effect for ``reason``."""
    if failed.action is Action.PLACE and "not in the hand" in reason:
        return [Subtask(Action.PICK, failed.object), failed]
    if failed.action is Action.PLACE and reason.endswith("open it first") and failed.target in ARTICULATED:
        assert failed.target is not None
        return [Subtask(Action.OPEN, failed.target), failed]
    return [failed]
