"""The child side of :func:`tiers.services.sandbox.run_sandboxed`: the program checker and the runner.

This module imports the standard library only, because it is also run as a script in a fresh interpreter
(``python -I -S sandbox_child.py``: isolated mode, no site-packages, no environment variables honoured). The
parent imports it too, to check a program before paying for a process.

Layers, outermost first (each one alone stops the attacks it is meant for):

1. **AST allow-list** (:func:`check_program`): only listed node types; no ``import``, ``class``, ``global``,
   ``with``, ``async``, ``yield``, ``del``; no name or attribute starting with ``_``; attribute access only to
   names on :data:`SAFE_ATTRIBUTES` plus the API's own member names (this blocks ``str.format``'s
   ``"{0.__class__}"`` walks, generator ``gi_frame`` walks and the like); no reference to a dangerous builtin
   (``getattr``, ``eval``, ``open``, ...) even as a plain name.
2. **Curated builtins** (:data:`SAFE_BUILTINS`): pure functions and data types, a capturing ``print``, a
   ``math`` namespace of functions. No module object is ever reachable.
3. **API proxies**: each API name is a function that sends ``{"type": "call", ...}`` as one JSON line to the
   parent and waits for the JSON reply. Only JSON crosses the boundary, never pickle.
4. **Resource limits** (``resource.setrlimit``, set before the program is even parsed): CPU seconds (the
   kernel sends SIGXCPU then SIGKILL), address space, no file growth (``RLIMIT_FSIZE`` 0), no new processes
   (``RLIMIT_NPROC`` 0; not enforced for root), no new file descriptors, no core dumps; a low recursion limit.
   The parent adds a wall-clock limit and kills the process group.

Protocol (one JSON object per line; the child's real stdin/stdout are moved to private descriptors and fds
0/1 point at /dev/null, so nothing else can write into the channel)::

    parent -> child   {"program": str, "functions": [name], "objects": {name: [member]}, "limits": {...}}
    child  -> parent  {"type": "call", "name": "robot.grasp", "args": [...], "kwargs": {...}}
    parent -> child   {"ok": value}  |  {"error": message}
    child  -> parent  {"type": "done", "value": ret_val, "output": printed text, "calls": n}
                      {"type": "error", "kind": "ZeroDivisionError", "message": str, "line": int, ...}
                      {"type": "limit", "message": str, ...}
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

RESULT_NAME = "ret_val"  # the program's result is the value of this global, as in Code as Policies
RECURSION_LIMIT = 400  # Python frames: deep enough for helper functions, low enough to fail fast

# -- layer 1: the AST allow-list ------------------------------------------------------------------------------

ALLOWED_NODES: frozenset[type[ast.AST]] = frozenset(
    {
        ast.Module, ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.For, ast.While, ast.If, ast.Break,
        ast.Continue, ast.Pass, ast.FunctionDef, ast.Return, ast.arguments, ast.arg, ast.Lambda, ast.Call,
        ast.keyword, ast.Name, ast.Load, ast.Store, ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set,
        ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.comprehension, ast.BinOp, ast.UnaryOp,
        ast.BoolOp, ast.Compare, ast.IfExp, ast.Subscript, ast.Slice, ast.Attribute, ast.JoinedStr,
        ast.FormattedValue, ast.Try, ast.ExceptHandler, ast.Raise, ast.Assert, ast.Starred, ast.NamedExpr,
        # operators
        ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd, ast.Not,
        ast.And, ast.Or, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Is,
        ast.IsNot, ast.BitAnd, ast.BitOr, ast.BitXor, ast.Invert, ast.LShift, ast.RShift,
    }
)  # fmt: skip

# Methods of the plain data types a program handles (str, list, dict, set, numbers) and of the math namespace.
# Anything else (format, format_map, gi_frame, f_globals, mro, ...) is refused by the checker.
SAFE_ATTRIBUTES: frozenset[str] = frozenset(
    {
        # str
        "lower", "upper", "strip", "lstrip", "rstrip", "split", "rsplit", "join", "replace", "startswith",
        "endswith", "find", "rfind", "count", "index", "isdigit", "isalpha", "isalnum", "isspace", "title",
        "capitalize", "splitlines", "partition", "rpartition", "zfill", "center", "ljust", "rjust",
        "removeprefix", "removesuffix",
        # list / dict / set
        "append", "extend", "insert", "pop", "remove", "sort", "reverse", "copy", "clear", "keys", "values",
        "items", "get", "setdefault", "update", "popitem", "add", "discard", "union", "intersection",
        "difference", "symmetric_difference", "issubset", "issuperset", "isdisjoint",
        # numbers
        "real", "imag", "conjugate", "is_integer", "bit_length",
        # the math namespace
        "sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "hypot", "radians", "degrees", "floor",
        "ceil", "exp", "log", "pi", "inf", "isfinite", "isclose", "copysign", "fabs", "dist",
    }
)  # fmt: skip

# Builtins a program may not even name: they reach attributes by string, code objects, frames or the OS.
FORBIDDEN_NAMES: frozenset[str] = frozenset(
    {
        "getattr", "setattr", "delattr", "hasattr", "vars", "dir", "globals", "locals", "eval", "exec",
        "compile", "open", "input", "breakpoint", "help", "type", "object", "super", "classmethod",
        "staticmethod", "property", "memoryview", "bytearray", "exit", "quit", "copyright", "credits",
        "license", "id", "aiter", "anext", "issubclass", "bytes", "os", "sys", "subprocess", "socket", "builtins",
        "importlib", "posix", "signal", "resource", "ctypes", "gc", "inspect", "code", "marshal", "pickle",
    }
)  # fmt: skip

MAX_PROGRAM_CHARS = 100_000  # longer programs are refused before parsing (the parser itself costs memory)


class ProgramRejectedError(Exception):
    """A program breaks the allow-list; ``str()`` names the line and the construct."""


def check_program(program: str, api_members: Iterable[str] = ()) -> ast.Module:
    """Parse ``program`` and check it against the allow-list; return its AST.

    Args:
        program: Python source of one program.
        api_members: attribute names the API objects expose (``grasp`` for ``robot.grasp``); they are allowed
            as attributes on top of :data:`SAFE_ATTRIBUTES`.

    Raises:
        ProgramRejectedError: naming the line, column and construct that is not allowed (or the syntax error).
    """
    if not isinstance(program, str):
        raise ProgramRejectedError(f"a program must be a string, got {type(program).__name__}")
    if len(program) > MAX_PROGRAM_CHARS:
        raise ProgramRejectedError(f"program is {len(program)} characters long; the limit is {MAX_PROGRAM_CHARS}")
    try:
        tree = ast.parse(program, filename="<program>", mode="exec")
    except SyntaxError as error:
        raise ProgramRejectedError(f"line {error.lineno}: syntax error: {error.msg}") from None
    except (ValueError, MemoryError, RecursionError) as error:  # null bytes, absurd nesting
        raise ProgramRejectedError(f"program cannot be parsed: {type(error).__name__}: {error}") from None
    attributes = SAFE_ATTRIBUTES | frozenset(api_members)
    for node in ast.walk(tree):
        where = f"line {getattr(node, 'lineno', '?')}, column {getattr(node, 'col_offset', '?')}"
        if type(node) not in ALLOWED_NODES:
            raise ProgramRejectedError(f"{where}: {type(node).__name__} is not allowed ({_explain(node)})")
        for name in _names(node):
            if name.startswith("_") and name != "_":  # a lone "_" (throwaway variable) reaches nothing
                raise ProgramRejectedError(f"{where}: names starting with '_' are not allowed: {name!r}")
            if name in FORBIDDEN_NAMES:
                raise ProgramRejectedError(f"{where}: {name!r} is not available in the sandbox")
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise ProgramRejectedError(f"{where}: attributes starting with '_' are not allowed: .{node.attr}")
            if node.attr not in attributes:
                raise ProgramRejectedError(f"{where}: attribute .{node.attr} is not on the allow-list")
        if isinstance(node, ast.FunctionDef) and node.decorator_list:
            raise ProgramRejectedError(f"{where}: decorators are not allowed")
    return tree


def _names(node: ast.AST) -> list[str]:
    """Identifiers a node binds or reads."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.FunctionDef):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.keyword) and node.arg is not None:
        return [node.arg]
    if isinstance(node, ast.ExceptHandler) and node.name is not None:
        return [node.name]
    return []


def _explain(node: ast.AST) -> str:
    if isinstance(node, ast.Import | ast.ImportFrom):
        return "imports are not allowed; use the API you are given"
    if isinstance(node, ast.ClassDef):
        return "classes are not allowed"
    if isinstance(node, ast.Global | ast.Nonlocal):
        return "global/nonlocal are not allowed"
    return "not on the allow-list"


# -- layer 2: curated builtins --------------------------------------------------------------------------------


class Namespace:
    """A read-only bag of functions (the ``math`` namespace, API objects); attributes only, no module."""

    __slots__ = ("_members",)

    def __init__(self, members: Mapping[str, Any]):
        object.__setattr__(self, "_members", dict(members))

    def __getattr__(self, name: str) -> Any:
        members = object.__getattribute__(self, "_members")
        if name in members:
            return members[name]
        raise AttributeError(f"no member {name!r}; members: {sorted(members)}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("sandbox namespaces are read-only")


MATH = Namespace(
    {
        name: getattr(math, name)
        for name in (
            "sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "atan2", "hypot", "radians", "degrees", "floor",
            "ceil", "exp", "log", "pi", "inf", "isfinite", "isclose", "copysign", "fabs", "dist",
        )
    }
)  # fmt: skip


class ApiError(Exception):
    """An API call failed in the parent (bad arguments, an unsafe motion, a failed grasp)."""


SAFE_BUILTINS: dict[str, Any] = {
    name: __builtins__[name] if isinstance(__builtins__, dict) else getattr(__builtins__, name)
    for name in (
        "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "int", "isinstance", "len",
        "list", "map", "max", "min", "pow", "range", "repr", "reversed", "round", "set", "sorted", "str", "sum",
        "tuple", "zip", "chr", "ord", "format", "frozenset", "iter", "next", "callable", "hash", "True", "False",
        "None", "Exception", "ValueError", "TypeError", "KeyError",
        "IndexError", "ZeroDivisionError", "RuntimeError", "AssertionError", "ArithmeticError", "LookupError",
    )
}  # fmt: skip
SAFE_BUILTINS["ApiError"] = ApiError
SAFE_BUILTINS["math"] = MATH


# -- the runner ------------------------------------------------------------------------------------------------


class _Channel:
    """JSON lines over two private file descriptors."""

    def __init__(self, read_fd: int, write_fd: int):
        self._reader = os.fdopen(read_fd, "rb", buffering=0)
        self._write_fd = write_fd
        self._buffer = b""

    def send(self, message: Mapping[str, Any]) -> None:
        data = (json.dumps(message, allow_nan=False) + "\n").encode()
        view = memoryview(data)
        while view:
            written = os.write(self._write_fd, view)
            view = view[written:]

    def receive(self) -> Any:
        while b"\n" not in self._buffer:
            chunk = self._reader.read(65536)
            if not chunk:
                raise EOFError("the parent closed the channel")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)


def _set_limits(limits: Mapping[str, float]) -> None:
    import resource

    used = resource.getrusage(resource.RUSAGE_SELF)
    # RLIMIT_CPU counts whole seconds of the process's total CPU time, start-up included
    cpu = max(1, round(used.ru_utime + used.ru_stime + float(limits["cpu_seconds"])))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at the soft limit, SIGKILL at the hard one
    memory = int(limits["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(ValueError, OSError):  # some runtimes refuse it; the other layers still stop forks
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    highest = max(int(name) for name in os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 16
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, highest + 1))
    sys.setrecursionlimit(RECURSION_LIMIT)


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` if it is JSON data (nested lists/dicts/str/numbers), else its ``repr`` (results are data)."""
    if depth > 50:
        raise ValueError("result nests deeper than 50 levels")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, list | tuple):
        return [_plain(item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, set):
        return [_plain(item, depth + 1) for item in sorted(value, key=repr)]
    return repr(value)


def _api_proxy(channel: _Channel, name: str, counter: list[int], max_calls: int) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        if counter[0] > max_calls:
            raise _LimitReached(f"more than {max_calls} API calls")
        channel.send({"type": "call", "name": name, "args": _plain(list(args)), "kwargs": _plain(kwargs)})
        reply = channel.receive()
        if "error" in reply:
            raise ApiError(f"{name}: {reply['error']}")
        return reply.get("ok")

    call.__name__ = call.__qualname__ = name
    return call


class _LimitReached(BaseException):
    """Raised inside the program when a counted limit is hit; a BaseException so ``except Exception`` misses it.

    The limit is also recorded (``_HIT``), so a program that swallows it with a bare ``except:`` is still
    reported as over the limit.
    """

    def __init__(self, message: str):
        super().__init__(message)
        _HIT.append(message)


_HIT: list[str] = []


def _error_line(error: BaseException) -> int | None:
    traceback = error.__traceback__
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<program>":
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def main() -> None:
    """Run one program: read the request, set limits, check, execute, report (see the module protocol)."""
    # Move the protocol to private descriptors; fds 0/1 become /dev/null so stray writes cannot corrupt it.
    read_fd, write_fd = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    channel = _Channel(read_fd, write_fd)
    request = channel.receive()
    limits = request["limits"]
    _set_limits(limits)
    output: list[str] = []
    printed = [0]
    max_output = int(limits["max_output_chars"])
    counter = [0]

    def sandbox_print(*args: Any, sep: str = " ", end: str = "\n") -> None:
        text = str(sep).join(str(arg) for arg in args) + str(end)
        printed[0] += len(text)
        if printed[0] > max_output:
            raise _LimitReached(f"printed more than {max_output} characters")
        output.append(text)

    objects: dict[str, list[str]] = request["objects"]
    members = [member for names in objects.values() for member in names]
    result: dict[str, Any]
    try:
        tree = check_program(request["program"], members)
        code = compile(tree, "<program>", "exec", dont_inherit=True)
        names: dict[str, Any] = {"__builtins__": {**SAFE_BUILTINS, "print": sandbox_print}}
        max_calls = int(limits["max_api_calls"])
        for function in request["functions"]:
            names[function] = _api_proxy(channel, function, counter, max_calls)
        for obj, member_names in objects.items():
            names[obj] = Namespace(
                {member: _api_proxy(channel, f"{obj}.{member}", counter, max_calls) for member in member_names}
            )
        exec(code, names)
        value = _plain(names.get(RESULT_NAME))
        result = {"type": "done", "value": value}
    except ProgramRejectedError as error:
        result = {"type": "violation", "message": str(error)}
    except _LimitReached as error:
        result = {"type": "limit", "message": str(error)}
    except MemoryError:
        result = {"type": "limit", "message": f"memory limit of {limits['memory_bytes']} bytes reached"}
    except RecursionError:
        result = {"type": "limit", "message": f"recursion deeper than {RECURSION_LIMIT} frames"}
    except Exception as error:
        result = {"type": "error", "kind": type(error).__name__, "message": str(error), "line": _error_line(error)}
    if _HIT and result["type"] != "limit":
        result = {"type": "limit", "message": _HIT[0]}
    result.update({"output": "".join(output), "calls": counter[0]})
    try:
        channel.send(result)
    except (ValueError, TypeError, RecursionError, MemoryError) as error:  # a result that is not JSON data
        channel.send({"type": "error", "kind": type(error).__name__, "message": f"result not sendable: {error}"})


if __name__ == "__main__":
    main()
