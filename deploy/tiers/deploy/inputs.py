"""Checks on everything a deployed robot receives from outside: bounded texts and consistent time stamps.

A node must survive any message (a fuzzer, a broken driver, a person pasting a page into a terminal): each
check either passes or raises :class:`InputRejectedError`, which names the field, what was expected and what came,
so the transport can report it (the ROS node: ``~/status`` and ``/rosout``) and carry on.

    texts        instructions and corrections: 1..MAX_TEXT_CHARS characters after trimming
    stamps       a joint state's stamp may not run ahead of the receiver's clock, nor go back, by more than a
                 tolerance since the last accepted one: a jump (+1000 s, a wall-clock stamp among sim-time
                 ones) is rejected
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tiers.core.errors import ContractError

MAX_TEXT_CHARS = 1000  # the longest instruction or correction accepted (characters, after trimming)
LOG_TEXT_CHARS = 80  # how much of a text goes into a log line or a status message


class InputRejectedError(ContractError):
    """A message field that cannot be used; the message says which field, what was expected and what came.

    Attributes:
        field: the field, e.g. ``"position"``, ``"header.stamp"``, ``"data"``.
        expected: what a valid value looks like (``"9 values (one per name)"``).
        got: what arrived (``"5 values"``).
    """

    def __init__(self, field: str, expected: str, got: str) -> None:
        super().__init__(f"{field}: expected {expected}, got {got}")
        self.field, self.expected, self.got = field, expected, got


def shorten(text: str, limit: int = LOG_TEXT_CHARS) -> str:
    """``text`` cut to ``limit`` characters for logs and statuses, saying how long it was when cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def check_text(text: str, *, field: str = "data", max_chars: int = MAX_TEXT_CHARS) -> str:
    """``text`` trimmed of surrounding whitespace, when it holds 1..``max_chars`` characters.

    Raises:
        InputRejectedError: empty (or only whitespace), or longer than ``max_chars``.
    """
    trimmed = str(text).strip()
    if not trimmed:
        raise InputRejectedError(field, f"1..{max_chars} characters", "an empty text")
    if len(trimmed) > max_chars:
        raise InputRejectedError(field, f"1..{max_chars} characters", f"{len(trimmed)} characters")
    return trimmed


class StampGuard:
    """Rejects stamps that jump relative to the receiver's clock.

    The first stamp is accepted as it is (a sim's clock and a robot's wall clock both work); each later one
    may not advance further than the receiver's clock did since the last accepted one, nor go back, by more
    than ``tolerance_s``. A sender whose clock runs slow or pauses (a stalled sim) is accepted. While
    :meth:`reanchor` is pending (e.g. nothing is being commanded from these states), the next stamp is
    accepted as the new reference, so a restarted driver with a new clock is taken up again.
    """

    def __init__(self, tolerance_s: float = 1.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        """
        Args:
            tolerance_s: s a stamp may differ from the expected one.
            clock: the receiver's monotonic seconds (arrival times).
        """
        if not tolerance_s > 0:
            raise ValueError(f"tolerance_s must be positive seconds, got {tolerance_s}")
        self.tolerance_s = tolerance_s
        self._clock = clock
        self._reference: tuple[float, float] | None = None  # (stamp s, arrival s) of the last accepted
        self._lock = threading.Lock()

    def reanchor(self) -> None:
        """Accept the next stamp as the new reference, whatever it is."""
        with self._lock:
            self._reference = None

    def check(self, stamp: float, *, field: str = "header.stamp") -> float:
        """Return ``stamp`` (s) when it is consistent with the last accepted one (see the class docstring); the
        caller passes it to :meth:`accept` once the rest of its message is found valid too.

        Raises:
            InputRejectedError: not finite, or too far from the last accepted stamp.
        """
        if stamp != stamp or stamp in (float("inf"), float("-inf")):
            raise InputRejectedError(field, "a finite time", repr(stamp))
        arrival = self._clock()
        with self._lock:
            reference = self._reference
        if reference is not None:
            last_stamp, last_arrival = reference
            latest = last_stamp + (arrival - last_arrival) + self.tolerance_s
            earliest = last_stamp - self.tolerance_s
            if not earliest <= stamp <= latest:
                raise InputRejectedError(
                    field,
                    f"{earliest:.3f}..{latest:.3f} s (the last accepted stamp {last_stamp:.3f} s, plus the "
                    f"{arrival - last_arrival:.3f} s since it arrived, ± {self.tolerance_s:.3f} s)",
                    f"{stamp:.3f} s",
                )
        return stamp

    def accept(self, stamp: float) -> None:
        """``stamp`` (s, checked) becomes the reference of the next check."""
        with self._lock:
            self._reference = (stamp, self._clock())
