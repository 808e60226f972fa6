"""YAY ("Yell At Your Robot") corrections: plain-language interjections routed to the tier they address.

A person may say anything at any moment. :func:`interpret_correction` decides which tier it is for:

    kind      examples                                        effect on the next control tick
    stop      "stop", "freeze", "hold on", "wait"             the robot holds its position; queued actions dropped
    resume    "continue", "go on", "resume", "carry on"       the hierarchy picks up where it was
    motion    "move a bit to the left", "lower", "go up and   a language motion from the RT-H vocabulary
              forward", "open the gripper", "rotate            (:data:`tiers.commands.motion_words.VOCABULARY`)
              clockwise"                                      overrides the low tier for a short nudge
    subtask   "no, open the cabinet first", "put the apple    replaces the current subtask; the planner is told
              in the bowl instead"                            (``handle_correction``) so its plan can follow

Each interpretation is a :class:`~tiers.core.language.LanguageCommand` (style ``stop`` / ``motion`` /
``subtask``, or ``correction`` for resume) whose ``replaces`` names the command in force, so the log keeps
the provenance chain. Motion corrections also carry a displacement: "a bit" is :data:`SMALL_STEP` m,
"a lot" :data:`LARGE_STEP` m, otherwise :data:`DEFAULT_STEP` m along each named axis (base frame: x forward,
y left, z up).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from tiers.core.errors import ContractError
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand

SMALL_STEP = 0.02  # m, "a bit", "slightly"
DEFAULT_STEP = 0.05  # m
LARGE_STEP = 0.10  # m, "a lot", "much"
ROTATION_STEP = np.deg2rad(20.0)  # rad of yaw per rotate correction

STOP_PHRASES = ("stop", "freeze", "halt", "hold on", "hold it", "wait", "don't move", "do not move", "pause")
RESUME_PHRASES = ("continue", "go on", "resume", "carry on", "keep going", "go ahead", "proceed")
RESUME_TEXT = "resume"  # the canonical text of a resume command
FILLERS = ("no", "nope", "instead", "first", "now", "please", "actually", "rather", "wrong", "not that")

# spoken direction word -> (axis index in the base frame, sign) ; x forward, y left, z up
DIRECTION_WORDS: dict[str, tuple[int, int]] = {
    "forward": (0, 1),
    "forwards": (0, 1),
    "ahead": (0, 1),
    "further": (0, 1),
    "away": (0, 1),
    "backward": (0, -1),
    "backwards": (0, -1),
    "back": (0, -1),
    "closer": (0, -1),
    "left": (1, 1),
    "right": (1, -1),
    "up": (2, 1),
    "higher": (2, 1),
    "raise": (2, 1),
    "lift": (2, 1),
    "upward": (2, 1),
    "upwards": (2, 1),
    "down": (2, -1),
    "lower": (2, -1),
    "downward": (2, -1),
    "downwards": (2, -1),
}
AXIS_NAMES = (("backward", "forward"), ("right", "left"), ("down", "up"))  # the RT-H words per axis (neg, pos)
MOTION_VERBS = ("move", "go", "shift", "nudge", "slide", "bring", "take", "lower", "raise", "lift")


class CorrectionKind(StrEnum):
    """Which tier a correction addresses."""

    STOP = "stop"
    RESUME = "resume"
    MOTION = "motion"
    SUBTASK = "subtask"


@dataclass(frozen=True)
class Correction:
    """An interpreted correction.

    Attributes:
        kind: the tier it addresses.
        command: the command to log and execute (its ``text`` is canonical: an RT-H language motion for
            motion corrections, the subtask with fillers removed for subtask corrections).
        said: what the person said, verbatim.
        displacement: (3,) m in the base frame for a translating motion correction, else zeros.
        yaw: rad about the base z axis for a rotating motion correction (counterclockwise positive), else 0.
        gripper: target opening for "open/close gripper" corrections: "open" | "close" | None.
    """

    kind: CorrectionKind
    command: LanguageCommand
    said: str
    displacement: NDArray[np.float64]
    yaw: float = 0.0
    gripper: str | None = None


def interpret_correction(
    text: str,
    *,
    timestamp: float,
    source: CommandSource | str = CommandSource.HUMAN_LIVE,
    current: LanguageCommand | None = None,
) -> Correction:
    """Decide which tier ``text`` addresses and turn it into a command.

    Args:
        text: what the person said.
        timestamp: s on the runtime clock.
        source: who said it (a person live, a replayed file, the simulated corrector).
        current: the command in force, recorded as the one the correction replaces.

    Raises:
        ContractError: ``text`` is empty or only filler words ("no", "please").
    """
    said = " ".join(str(text).split())
    source = CommandSource(source)
    words = _words(said)
    if not words:
        raise ContractError(f"correction {text!r} is empty")
    phrase = " ".join(words)
    zero = np.zeros(3)

    def command(canonical: str, style: CommandStyle) -> LanguageCommand:
        return LanguageCommand(canonical, style, source, timestamp, replaces=current)

    if _has_phrase(phrase, STOP_PHRASES) and not _has_phrase(phrase, RESUME_PHRASES):
        return Correction(CorrectionKind.STOP, command("stop", CommandStyle.STOP), said, zero)
    if _has_phrase(phrase, RESUME_PHRASES):
        return Correction(CorrectionKind.RESUME, command(RESUME_TEXT, CommandStyle.CORRECTION), said, zero)
    motion = _motion(words)
    if motion is not None:
        canonical, displacement, yaw, gripper = motion
        return Correction(
            CorrectionKind.MOTION, command(canonical, CommandStyle.MOTION), said, displacement, yaw, gripper
        )
    content = [word for word in words if word not in FILLERS]
    while content and content[-1] in FILLERS:
        content.pop()
    if not content:
        raise ContractError(f"correction {text!r} says no new subtask, motion, stop or resume")
    return Correction(CorrectionKind.SUBTASK, command(" ".join(content), CommandStyle.SUBTASK), said, zero)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower().replace("counter clockwise", "counterclockwise"))


def _has_phrase(phrase: str, candidates: tuple[str, ...]) -> bool:
    return any(re.search(rf"\b{re.escape(candidate)}\b", phrase) for candidate in candidates)


def _motion(words: list[str]) -> tuple[str, NDArray[np.float64], float, str | None] | None:
    """(RT-H phrase, displacement m, yaw rad, gripper) when ``words`` ask for an end-effector motion, else None.

    A subtask that happens to contain a direction ("put the cup on the left") is not a motion: a motion
    correction either starts with a motion verb or direction word, or is only directions and size words.
    """
    if "gripper" in words or "hand" in words or words[:1] in (["release"], ["grab"], ["let"]):
        if any(word in words for word in ("rotate", "turn", "twist")):
            return _rotation(words)
        if any(word in words for word in ("open", "release", "let")):
            return "open gripper", np.zeros(3), 0.0, "open"
        if any(word in words for word in ("close", "grab", "squeeze", "grip")):
            return "close gripper", np.zeros(3), 0.0, "close"
    if any(word in words for word in ("clockwise", "counterclockwise", "anticlockwise")):
        return _rotation(words)
    directions = [DIRECTION_WORDS[word] for word in words if word in DIRECTION_WORDS]
    if not directions:
        return None
    size_words = {"a", "bit", "little", "slightly", "lot", "much", "more", "the", "to", "arm", "your", "and", "it"}
    only_motion = all(word in DIRECTION_WORDS or word in size_words or word in MOTION_VERBS for word in words)
    starts_as_motion = words[0] in MOTION_VERBS or words[0] in DIRECTION_WORDS
    if not (only_motion or (starts_as_motion and len(words) <= 6)):
        return None
    step = DEFAULT_STEP
    if {"bit", "little", "slightly"} & set(words):
        step = SMALL_STEP
    elif {"lot", "much"} & set(words):
        step = LARGE_STEP
    displacement = np.zeros(3)
    for axis, sign in directions:
        displacement[axis] = sign * step
    named = [AXIS_NAMES[axis][int(displacement[axis] > 0)] for axis in range(3) if displacement[axis] != 0]
    return "move arm " + " and ".join(named), displacement, 0.0, None


def _rotation(words: list[str]) -> tuple[str, NDArray[np.float64], float, str | None]:
    counter = any(word in words for word in ("counterclockwise", "anticlockwise"))
    if counter:
        return "rotate gripper counterclockwise", np.zeros(3), float(ROTATION_STEP), None
    return "rotate gripper clockwise", np.zeros(3), -float(ROTATION_STEP), None
