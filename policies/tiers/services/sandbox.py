"""Run untrusted policy code (Code as Policies programs written by a language model) in a sandbox.

:func:`run_sandboxed` is the one entry point::

    result = run_sandboxed("ret_val = [p for p in api_names() if p != 'bowl']", {"api_names": lambda: [...]})
    result.value, result.output, result.calls

How (see :mod:`tiers.services.sandbox_child` for the layers in detail):

* the program is checked against an AST allow-list here, in the parent, before any process starts, and again
  in the child;
* it runs in a fresh interpreter (``python -I -S``, standard library only, empty environment, its own process
  group) with ``resource.setrlimit`` limits on CPU time, address space, file size, processes and descriptors,
  and curated builtins;
* every API call travels as one JSON line to this process, which runs the real callable and answers with JSON:
  only plain data crosses, never pickle and never an object reference, so the program never holds a module,
  a simulator or a robot handle;
* this process enforces the wall-clock limit (time spent inside API calls does not count: a robot motion may
  take seconds) and kills the child's process group when it is exceeded.

Errors: :class:`SandboxViolation` for anything the sandbox refused or stopped (the program breaks the
allow-list: :class:`SandboxViolation` itself; a limit was hit: :class:`SandboxLimitError`); a program that is
allowed but fails on its own (``1 / 0``, an unknown name, an API call that raised) raises
:class:`SandboxProgramError`, which is not a violation.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tiers.core.config import Config
from tiers.core.errors import TiersError
from tiers.services.sandbox_child import ProgramRejectedError, check_program

CHILD_SCRIPT = Path(__file__).with_name("sandbox_child.py")
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # a child line longer than this is an attack on the parent's memory


class SandboxViolation(TiersError):  # noqa: N818 (the name the high-tier issue gives it)
    """The sandbox refused or stopped a program: it breaks the allow-list, or it hit a limit (subclass)."""


class SandboxLimitError(SandboxViolation):
    """The program ran over a limit (CPU, wall clock, memory, recursion, API calls or their time, output)."""


class SandboxProgramError(TiersError):
    """An allowed program failed by itself (an exception in its code or in an API call it made).

    Attributes:
        kind: the exception type's name inside the sandbox ("ZeroDivisionError", "ApiError").
        line: line of the program where it was raised, if known.
        output: what the program printed before failing.
    """

    def __init__(self, message: str, *, kind: str, line: int | None, output: str):
        super().__init__(message)
        self.kind = kind
        self.line = line
        self.output = output


@dataclass
class SandboxLimits(Config):
    """Limits of one sandboxed run."""

    cpu_seconds: float = 2.0  # CPU time of the child (rounded up to whole seconds by the kernel's RLIMIT_CPU)
    wall_seconds: float = 5.0  # wall-clock time of the child, excluding time the parent spends in API calls
    memory_bytes: int = 256 * 1024 * 1024  # address space of the child (RLIMIT_AS); python itself needs ~20 MB
    max_api_calls: int = 10_000  # API calls one program may make
    max_output_chars: int = 100_000  # characters the program may print
    api_seconds: float = 600.0  # total time the parent may spend running the program's API calls (motions)

    def __post_init__(self) -> None:
        if not (self.cpu_seconds > 0 and self.wall_seconds > 0 and self.api_seconds > 0):
            raise ValueError(
                f"cpu_seconds, wall_seconds and api_seconds must be > 0, got {self.cpu_seconds}, "
                f"{self.wall_seconds}, {self.api_seconds}"
            )
        if self.memory_bytes < 64 * 1024 * 1024:
            raise ValueError(f"memory_bytes must be at least 64 MiB for the interpreter, got {self.memory_bytes}")
        if self.max_api_calls < 0 or self.max_output_chars < 0:
            raise ValueError("max_api_calls and max_output_chars must be >= 0")


@dataclass(frozen=True)
class SandboxResult:
    """What a program produced.

    Attributes:
        value: the value of its global ``ret_val`` at the end, as plain data (None if unset).
        output: what it printed.
        calls: the API calls it made, in order, as ``(name, args, kwargs)`` plain data.
        wall_seconds: time the child ran (excluding API calls), s.
        api_seconds: time spent in API calls in this process, s.
    """

    value: Any
    output: str
    calls: list[tuple[str, list[Any], dict[str, Any]]] = field(default_factory=list)
    wall_seconds: float = 0.0
    api_seconds: float = 0.0


def api_members(api: Mapping[str, Callable[..., Any]]) -> tuple[list[str], dict[str, list[str]]]:
    """Split API names into plain functions and ``object.member`` groups (``robot.grasp`` -> robot: [grasp]).

    Raises:
        SandboxViolation: a name is not a valid identifier, starts with ``_`` or nests deeper than one dot.
    """
    functions: list[str] = []
    objects: dict[str, list[str]] = {}
    for name, function in api.items():
        parts = name.split(".")
        if len(parts) > 2 or not all(part.isidentifier() and not part.startswith("_") for part in parts):
            raise SandboxViolation(f"API name {name!r} must be 'name' or 'object.member' without leading '_'")
        if not callable(function):
            raise SandboxViolation(f"API entry {name!r} is not callable (only functions cross into the sandbox)")
        if len(parts) == 1:
            functions.append(name)
        else:
            objects.setdefault(parts[0], []).append(parts[1])
    clash = set(functions) & set(objects)
    if clash:
        raise SandboxViolation(f"API names {sorted(clash)} are both functions and objects")
    return functions, objects


def plain_data(value: Any) -> Any:
    """Convert an API return value to JSON data: numpy arrays and tuples to lists, numpy scalars to numbers.

    Raises:
        TypeError: for anything else (an object must never cross into the sandbox).
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return plain_data(value.item())
    if isinstance(value, np.ndarray):
        return plain_data(value.tolist())
    if isinstance(value, list | tuple):
        return [plain_data(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): plain_data(item) for key, item in value.items()}
    raise TypeError(f"API returned a {type(value).__name__}; only plain data (numbers, str, lists, dicts) may cross")


def run_sandboxed(
    program: str,
    api: Mapping[str, Callable[..., Any]],
    *,
    limits: SandboxLimits | None = None,
) -> SandboxResult:
    """Run one program string in a child process against ``api``; see the module docstring.

    Args:
        program: Python source. It may define helper functions, loop, compute, print, call the API and set
            ``ret_val`` to hand back a result. It may not import, define classes, touch names or attributes
            starting with ``_``, or use attributes outside the allow-list.
        api: name -> callable run in this process on the program's behalf. ``"say"`` becomes a function
            ``say(...)``; ``"robot.grasp"`` becomes a member of an object ``robot`` that has nothing else.
            Arguments arrive as JSON data (lists, dicts, str, numbers); return values must be plain data
            (numpy arrays are converted).
        limits: CPU, wall-clock, memory, call and output limits (default :class:`SandboxLimits`).

    Returns:
        the program's ``ret_val``, printed output and the API calls it made.

    Raises:
        SandboxViolation: the program breaks the allow-list (checked before a process starts).
        SandboxLimitError: it ran over a limit; the child was killed or stopped itself.
        SandboxProgramError: it raised an exception (its own, or an API call's as ``ApiError``).
    """
    limits = limits or SandboxLimits()
    functions, objects = api_members(api)
    members = [member for names in objects.values() for member in names]
    try:
        check_program(program, members)
    except ProgramRejectedError as error:
        raise SandboxViolation(f"program refused: {error}") from None
    request = {
        "program": program,
        "functions": functions,
        "objects": objects,
        "limits": {
            "cpu_seconds": limits.cpu_seconds,
            "memory_bytes": limits.memory_bytes,
            "max_api_calls": limits.max_api_calls,
            "max_output_chars": limits.max_output_chars,
        },
    }
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", "-B", str(CHILD_SCRIPT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={},
        cwd="/",
        start_new_session=True,  # its own process group: killed as a whole
    )
    try:
        return _serve(process, request, api, limits)
    finally:
        _kill(process)


def _serve(
    process: subprocess.Popen[bytes],
    request: dict[str, Any],
    api: Mapping[str, Callable[..., Any]],
    limits: SandboxLimits,
) -> SandboxResult:
    """Answer the child's API calls until it reports, dies or runs out of wall-clock time."""
    assert process.stdin is not None and process.stdout is not None
    reader = _LineReader(process.stdout.fileno())
    _send(process, request)
    calls: list[tuple[str, list[Any], dict[str, Any]]] = []
    child_time = api_time = 0.0
    while True:
        started = time.perf_counter()
        remaining = limits.wall_seconds - child_time
        try:
            message = reader.read_line(remaining)
        finally:
            child_time += time.perf_counter() - started
        if message is None:  # timed out or closed
            if child_time >= limits.wall_seconds:
                raise SandboxLimitError(f"wall-clock limit of {limits.wall_seconds} s reached")
            raise _death(process, limits)
        try:
            data = json.loads(message)
        except (ValueError, RecursionError):  # RecursionError: absurdly nested JSON aimed at the parent
            raise SandboxViolation("the child sent something that is not JSON data") from None
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "call":
            started = time.perf_counter()
            reply = _call(api, data, calls)
            api_time += time.perf_counter() - started
            if api_time > limits.api_seconds:
                raise SandboxLimitError(f"API calls took {api_time:.1f} s; the limit is {limits.api_seconds} s")
            _send(process, reply)
            continue
        output = str(data.get("output", "")) if isinstance(data, dict) else ""
        if kind == "done":
            return SandboxResult(data.get("value"), output, calls, child_time, api_time)
        if kind == "violation":
            raise SandboxViolation(f"program refused: {data.get('message')}")
        if kind == "limit":
            raise SandboxLimitError(str(data.get("message")))
        if kind == "error":
            line = data.get("line")
            where = f" at line {line}" if line else ""
            raise SandboxProgramError(
                f"program raised {data.get('kind')}{where}: {data.get('message')}",
                kind=str(data.get("kind")),
                line=line if isinstance(line, int) else None,
                output=output,
            )
        raise SandboxViolation(f"the child sent an unknown message type {kind!r}")


def _call(
    api: Mapping[str, Callable[..., Any]], data: Mapping[str, Any], calls: list[tuple[str, list[Any], dict[str, Any]]]
) -> dict[str, Any]:
    name, args, kwargs = data.get("name"), data.get("args"), data.get("kwargs")
    if not isinstance(name, str) or name not in api or not isinstance(args, list) or not isinstance(kwargs, dict):
        return {"error": f"no API function {name!r}"}
    calls.append((name, args, kwargs))
    try:
        return {"ok": plain_data(api[name](*args, **kwargs))}
    except Exception as error:  # the program sees the failure as ApiError and may handle it
        return {"error": f"{type(error).__name__}: {error}"}


def _send(process: subprocess.Popen[bytes], message: Mapping[str, Any]) -> None:
    assert process.stdin is not None
    try:
        process.stdin.write((json.dumps(message) + "\n").encode())
        process.stdin.flush()
    except (BrokenPipeError, OSError):
        pass  # the child died; the read that follows reports why


def _death(process: subprocess.Popen[bytes], limits: SandboxLimits) -> TiersError:
    """The error for a child that closed its channel without reporting (killed by a limit, or crashed)."""
    try:
        code = process.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        _kill(process)
        code = process.wait()
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        return SandboxLimitError(f"CPU time limit of {limits.cpu_seconds} s reached (child killed by signal {-code})")
    if code == -signal.SIGXFSZ:
        return SandboxLimitError("file size limit reached (the sandbox may not write files)")
    stderr = process.stderr.read(2000).decode(errors="replace") if process.stderr else ""
    if "MemoryError" in stderr:
        return SandboxLimitError(f"memory limit of {limits.memory_bytes} bytes reached")
    return SandboxViolation(f"the sandbox process ended without a result (exit code {code}): {stderr.strip()[-500:]}")


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


class _LineReader:
    """Reads newline-terminated messages from a descriptor with a deadline and a size cap."""

    def __init__(self, fd: int):
        self._fd = fd
        self._buffer = b""
        self._selector = selectors.DefaultSelector()
        self._selector.register(fd, selectors.EVENT_READ)

    def read_line(self, timeout: float) -> bytes | None:
        """The next line, or None when ``timeout`` s pass or the stream closes first."""
        deadline = time.perf_counter() + max(timeout, 0.0)
        while b"\n" not in self._buffer:
            left = deadline - time.perf_counter()
            if left <= 0 or not self._selector.select(left):
                return None
            chunk = os.read(self._fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
            if len(self._buffer) > MAX_MESSAGE_BYTES:
                raise SandboxLimitError(f"the child sent a message over {MAX_MESSAGE_BYTES} bytes")
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line
