"""RT-H language motions: the fixed vocabulary of short phrases that say what the end effector does next.

RT-H (Belkhale et al., 2024) inserts a "language motion" between the task and the action. This module is the
vocabulary alone, shared by the labeler that computes motions from proprioception
(:mod:`tiers.datasets.language_motion`), the planners that predict them and the tiers that execute them.

Vocabulary (:data:`VOCABULARY`, 31 phrases), directions in the robot base frame (x forward, away from the
robot; y left; z up):
    "move arm <directions>"   directions: any non-empty combination, in this order, of forward|backward,
                              left|right, up|down, joined by " and " ("move arm left and down");
    "rotate gripper clockwise" / "rotate gripper counterclockwise"   yaw about the base z axis, seen from above;
    "close gripper" / "open gripper";
    "stop".
"""

from __future__ import annotations

from itertools import product

STOP = "stop"
OPEN_GRIPPER = "open gripper"
CLOSE_GRIPPER = "close gripper"
ROTATE_CLOCKWISE = "rotate gripper clockwise"
ROTATE_COUNTERCLOCKWISE = "rotate gripper counterclockwise"
MOVE_PREFIX = "move arm "
# (negative word, positive word) per base axis x, y, z
AXIS_WORDS: tuple[tuple[str, str], ...] = (("backward", "forward"), ("right", "left"), ("down", "up"))


def _move_phrases() -> tuple[str, ...]:
    phrases = []
    for choice in product(*[(None, *words) for words in AXIS_WORDS]):
        words = [word for word in choice if word is not None]
        if words:
            phrases.append(MOVE_PREFIX + " and ".join(words))
    return tuple(phrases)


MOVE_PHRASES = _move_phrases()  # 26 phrases
VOCABULARY: tuple[str, ...] = (
    *MOVE_PHRASES,
    ROTATE_CLOCKWISE,
    ROTATE_COUNTERCLOCKWISE,
    CLOSE_GRIPPER,
    OPEN_GRIPPER,
    STOP,
)


def is_move(phrase: str) -> bool:
    return phrase.startswith(MOVE_PREFIX)


def move_directions(phrase: str) -> frozenset[str]:
    """Direction words of a "move arm ..." phrase (empty for other phrases)."""
    if not is_move(phrase):
        return frozenset()
    return frozenset(phrase.removeprefix(MOVE_PREFIX).split(" and "))
