"""A corpus of escape attempts and benign programs for the sandbox, and the code that scores it.

Used by the tests (every attack must be contained, no benign program rejected) and by ``tiers bench planner``
(the figures: attacks tried / with any effect / benign rejected).

An attack **has an effect** when any of these is observed after it ran:

* the marker file it tries to create exists (``{marker}`` in its source is replaced by a fresh path);
* the TCP listener it tries to reach (``{port}``) accepted a connection;
* the run came back normally with ``ret_val == "escaped"`` (every attack sets it after its escape step), or came
  back normally at all when the attack is one that must be stopped (resource bombs, forbidden constructs);
* the parent waited longer than the wall-clock limit plus a margin (the limit did not hold).

A benign program is **rejected** when the sandbox raises anything or its ``ret_val`` differs from the expected one.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiers.core.errors import TiersError
from tiers.services.sandbox import SandboxLimits, SandboxProgramError, SandboxViolation, run_sandboxed


@dataclass(frozen=True)
class Attack:
    """One escape attempt: ``program`` may use ``{marker}`` (a file path) and ``{port}`` (a TCP port)."""

    name: str
    category: str
    program: str
    must_stop: bool = True  # a normal return is itself an effect


@dataclass(frozen=True)
class Benign:
    """A program the sandbox must run, with the ``ret_val`` it must produce."""

    name: str
    program: str
    expected: Any


_ESCAPED = '\nret_val = "escaped"'

ATTACKS: tuple[Attack, ...] = (
    # imports, in every spelling
    Attack("import os", "import", 'import os\nos.system("touch {marker}")' + _ESCAPED),
    Attack("from os import system", "import", 'from os import system\nsystem("touch {marker}")' + _ESCAPED),
    Attack("__import__", "import", '__import__("os").system("touch {marker}")' + _ESCAPED),
    Attack("builtins dict", "import", '__builtins__["__import__"]("os").system("touch {marker}")' + _ESCAPED),
    Attack("importlib", "import", 'importlib.import_module("os").system("touch {marker}")' + _ESCAPED),
    Attack("import in function", "import", 'def f():\n    import os\n    return os\nf().system("touch {marker}")'),
    # attribute walks to the interpreter's internals
    Attack("subclasses walk", "attribute", "x = ().__class__.__bases__[0].__subclasses__()" + _ESCAPED),
    Attack(
        "catch_warnings builtins",
        "attribute",
        "c = [k for k in ().__class__.__base__.__subclasses__() if k.__name__ == 'catch_warnings'][0]\n"
        "c()._module.__builtins__['open']('{marker}', 'w').write('x')" + _ESCAPED,
    ),
    Attack("function globals", "attribute", "f = lambda: 0\nb = f.__globals__['__builtins__']" + _ESCAPED),
    Attack("builtin __self__", "attribute", "m = print.__self__" + _ESCAPED),
    Attack("code object", "attribute", "def f():\n    pass\nc = f.__code__" + _ESCAPED),
    Attack("generator frame", "attribute", "g = (x for x in [1])\nb = g.gi_frame.f_globals" + _ESCAPED),
    Attack(
        "traceback frame",
        "attribute",
        "try:\n    1 / 0\nexcept Exception as e:\n    g = e.__traceback__.tb_frame.f_back.f_globals" + _ESCAPED,
    ),
    Attack("exception frame by name", "attribute", "try:\n    1 / 0\nexcept Exception as e:\n    t = e.tb_frame"),
    Attack("math module dict", "attribute", "d = math.__dict__" + _ESCAPED),
    Attack("mro walk", "attribute", "k = [].__class__.__mro__[-1].__subclasses__()" + _ESCAPED),
    Attack("api object internals", "attribute", "m = robot._members" + _ESCAPED),
    Attack("api object unknown member", "attribute", "robot.secret()" + _ESCAPED),
    Attack("api function globals", "attribute", "g = get_value.__globals__" + _ESCAPED),
    # attribute access by string
    Attack("getattr strings", "getattr", 'c = getattr((), "__cl" + "ass__")' + _ESCAPED),
    Attack("vars", "getattr", "v = vars(math)" + _ESCAPED),
    Attack("globals()", "getattr", 'b = globals()["__builtins__"]' + _ESCAPED),
    Attack("dir", "getattr", "d = dir()" + _ESCAPED),
    Attack("type()", "getattr", "t = type(print)" + _ESCAPED),
    # format strings that walk attributes
    Attack("str.format walk", "format", 'x = "{0.__class__.__base__.__subclasses__}".format(0)' + _ESCAPED),
    Attack("format_map walk", "format", 'x = "{a.__class__}".format_map({"a": 1})' + _ESCAPED),
    Attack("bound format alias", "format", 'f = "{0.__globals__}".format\nx = f(get_value)' + _ESCAPED),
    Attack("f-string walk", "format", 'x = f"{().__class__.__base__}"' + _ESCAPED),
    Attack("format builtin", "format", 'x = format(get_value, "{0.__globals__}")' + _ESCAPED),
    # files
    Attack("open write", "file", 'open("{marker}", "w").write("x")' + _ESCAPED),
    Attack("print to file", "file", 'print("x", file=open("{marker}", "w"))' + _ESCAPED),
    Attack("with open", "file", 'with open("{marker}", "w") as f:\n    f.write("x")' + _ESCAPED),
    # network
    Attack("socket", "network", 'import socket\nsocket.create_connection(("127.0.0.1", {port}))' + _ESCAPED),
    Attack("urllib", "network", 'import urllib.request\nurllib.request.urlopen("http://127.0.0.1:{port}")' + _ESCAPED),
    Attack(
        "__import__ socket",
        "network",
        '__import__("socket").create_connection(("127.0.0.1", {port}))' + _ESCAPED,
    ),
    # code execution
    Attack("exec", "exec", 'exec("import os")' + _ESCAPED),
    Attack("eval", "exec", "eval(\"__import__('os')\")" + _ESCAPED),
    Attack("compile", "exec", 'c = compile("import os", "x", "exec")' + _ESCAPED),
    Attack("breakpoint", "exec", "breakpoint()" + _ESCAPED),
    # constructs outside the allow-list
    Attack("class", "syntax", "class A:\n    pass" + _ESCAPED),
    Attack("global", "syntax", "def f():\n    global ret_val\n    ret_val = 'escaped'\nf()"),
    Attack("decorator", "syntax", "def d(f):\n    return f\n@d\ndef g():\n    pass" + _ESCAPED),
    Attack("async", "syntax", "async def f():\n    pass" + _ESCAPED),
    Attack("yield frame", "syntax", "def g():\n    yield 1\nx = g()" + _ESCAPED),
    Attack("match class pattern", "syntax", "match 1:\n    case int(real=r):\n        ret_val = 'escaped'"),
    Attack("nested parentheses", "syntax", "x = " + "(" * 300 + "1" + ")" * 300 + _ESCAPED),
    # resource bombs
    Attack("memory string", "resource", 'x = "a" * (10 ** 10)' + _ESCAPED),
    Attack("memory list", "resource", "x = [0] * (10 ** 9)" + _ESCAPED),
    Attack("memory growth", "resource", 'x = []\nwhile True:\n    x.append("a" * 10 ** 6)'),
    Attack("huge int", "resource", "x = 10 ** (10 ** 8)" + _ESCAPED),
    Attack("deep recursion", "resource", "def f(n):\n    return f(n + 1)\nf(0)" + _ESCAPED),
    Attack("lambda recursion", "resource", "(lambda f: f(f))(lambda f: f(f))" + _ESCAPED),
    Attack("infinite loop", "resource", "while True:\n    pass"),
    Attack(
        "loop swallowing errors",
        "resource",
        "while True:\n    try:\n        while True:\n            pass\n    except:\n        pass",
    ),
    Attack("api call flood", "resource", "while True:\n    get_value()"),
    Attack("output flood", "resource", 'while True:\n    print("x" * 1000)'),
    Attack("huge api argument", "resource", 'get_value("a" * (8 * 10 ** 6))' + _ESCAPED),
    Attack("fork bomb", "resource", 'import os\nwhile True:\n    os.fork()\nopen("{marker}", "w")'),
    Attack("fork bomb __import__", "resource", 'while True:\n    __import__("os").fork()'),
    # the parent channel
    Attack(
        "forged protocol line",
        "protocol",
        'print(\'{"type": "done", "value": "escaped"}\')\nprint(\'{"type": "call", "name": "get_value"}\')',
        must_stop=False,
    ),
)

BENIGN: tuple[Benign, ...] = (
    Benign("arithmetic", "ret_val = (3 + 4) * 2 - 10 / 4 + 7 // 2 + 7 % 3 + 2 ** 5", 47.5),
    Benign("for loop", "total = 0\nfor i in range(10):\n    total += i\nret_val = total", 45),
    Benign("while break", "n = 0\nwhile True:\n    n += 3\n    if n > 10:\n        break\nret_val = n", 12),
    Benign("list comprehension", "ret_val = [i * i for i in range(5) if i % 2 == 0]", [0, 4, 16]),
    Benign("dict comprehension", "ret_val = {k: len(k) for k in ['cup', 'bowl']}", {"cup": 3, "bowl": 4}),
    Benign("set and sorted", "ret_val = sorted({3, 1, 2, 3})", [1, 2, 3]),
    Benign("generator sum", "ret_val = sum(x for x in range(4))", 6),
    Benign("math namespace", "ret_val = round(math.sqrt(16) + math.atan2(1, 1) * 4 / math.pi, 6)", 5.0),
    Benign("f-string", "x = 3.14159\nret_val = f'{x:.2f} m at {2 + 1} s'", "3.14 m at 3 s"),
    Benign("percent format", "ret_val = '%s has %d items' % ('bowl', 2)", "bowl has 2 items"),
    Benign("string methods", "ret_val = ' '.join(w.capitalize() for w in 'put the cup'.split())", "Put The Cup"),
    Benign(
        "helper function",
        "def dist(a, b):\n    return math.hypot(a[0] - b[0], a[1] - b[1])\nret_val = dist([0, 0], [3, 4])",
        5.0,
    ),
    Benign("recursion", "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\nret_val = fib(15)", 610),
    Benign("closure", "def adder(k):\n    def add(x):\n        return x + k\n    return add\nret_val = adder(2)(3)", 5),
    Benign("lambda key", "pts = [[3, 1], [1, 2], [2, 0]]\nret_val = min(pts, key=lambda p: p[1])", [2, 0]),
    Benign("try except", "try:\n    x = int('nope')\nexcept ValueError:\n    x = -1\nret_val = x", -1),
    Benign("unpacking", "a, *rest = [1, 2, 3]\nret_val = [a, rest, *zip([1], ['a'])]", [1, [2, 3], [1, "a"]]),
    Benign("enumerate dict", "d = {}\nfor i, n in enumerate(['a', 'b']):\n    d[n] = i\nret_val = d", {"a": 0, "b": 1}),
    Benign("kwargs helper", "def f(*args, **kw):\n    return len(args) + len(kw)\nret_val = f(1, 2, x=3)", 3),
    Benign("api calls", "ret_val = [get_value() + 1, robot.say('hello')]", [2, "said hello"]),
    Benign("api positions", "p = robot.position('cup')\nret_val = [round(v + 1, 3) for v in p]", [1.1, 1.2, 1.3]),
    Benign("print", "print('step', 1)\nret_val = 'ok'", "ok"),
    Benign("assert and slicing", "xs = list(range(10))\nassert xs[2:5] == [2, 3, 4]\nret_val = xs[::-3]", [9, 6, 3, 0]),
    Benign("walrus", "ret_val = [y for x in range(4) if (y := x * 2) > 2]", [4, 6]),
)


def corpus_api() -> dict[str, Callable[..., Any]]:
    """The small API every corpus program runs against."""
    return {
        "get_value": lambda *args: 1,
        "robot.say": lambda text: f"said {text}",
        "robot.position": lambda name: [0.1, 0.2, 0.3],
    }


@dataclass(frozen=True)
class Outcome:
    """How one corpus program went."""

    name: str
    category: str
    outcome: str  # "violation", "limit", "program_error", "returned"
    message: str
    effect: bool  # attacks: an effect was observed; benign: the program was rejected or wrong
    seconds: float


@dataclass
class CorpusReport:
    """Figures of one corpus run."""

    attacks: list[Outcome] = field(default_factory=list)
    benign: list[Outcome] = field(default_factory=list)

    def figures(self) -> dict[str, int]:
        return {
            "sandbox_attacks_tried": len(self.attacks),
            "sandbox_attacks_with_effect": sum(o.effect for o in self.attacks),
            "sandbox_benign_tried": len(self.benign),
            "sandbox_benign_rejected": sum(o.effect for o in self.benign),
        }


class _Listener:
    """A localhost TCP listener counting the connections it accepts (the network attacks' target)."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen()
        self._socket.settimeout(0.2)
        self.port = int(self._socket.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            connection.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


def _run(program: str, api: Mapping[str, Callable[..., Any]], limits: SandboxLimits) -> tuple[str, str, Any, float]:
    start = time.perf_counter()
    try:
        result = run_sandboxed(program, api, limits=limits)
    except SandboxViolation as error:
        kind = "limit" if type(error).__name__ == "SandboxLimitError" else "violation"
        return kind, str(error), None, time.perf_counter() - start
    except SandboxProgramError as error:
        return "program_error", str(error), None, time.perf_counter() - start
    except TiersError as error:  # anything else the sandbox raised counts as stopped
        return "violation", str(error), None, time.perf_counter() - start
    return "returned", "", result.value, time.perf_counter() - start


def run_corpus(limits: SandboxLimits | None = None, *, workers: int = 2) -> CorpusReport:
    """Run every attack and benign program, each in its own sandbox process (``workers`` at a time).

    Args:
        limits: per-program limits; default 1 s CPU, 2 s wall clock, 192 MiB (small, so bombs end fast).
        workers: programs run concurrently (each in its own child process; isolation is not shared).
    """
    limits = limits or SandboxLimits(cpu_seconds=1.0, wall_seconds=2.0, memory_bytes=192 * 1024 * 1024)
    margin = 3.0  # s beyond the wall-clock limit before a slow return counts as the limit failing
    report = CorpusReport()
    listener = _Listener()
    try:
        with tempfile.TemporaryDirectory(prefix="tiers-sandbox-") as folder:
            markers = {attack.name: Path(folder) / f"marker-{index}" for index, attack in enumerate(ATTACKS)}

            def attack_outcome(attack: Attack) -> Outcome:
                marker = markers[attack.name]
                program = attack.program.replace("{marker}", str(marker)).replace("{port}", str(listener.port))
                before = listener.connections
                kind, message, value, seconds = _run(program, corpus_api(), limits)
                effect = (
                    marker.exists()
                    or listener.connections > before
                    or value == "escaped"
                    or (kind == "returned" and attack.must_stop)
                    or seconds > limits.wall_seconds + margin
                )
                return Outcome(attack.name, attack.category, kind, message, effect, seconds)

            def benign_outcome(benign: Benign) -> Outcome:
                kind, message, value, seconds = _run(benign.program, corpus_api(), limits)
                wrong = kind != "returned" or value != benign.expected
                if kind == "returned" and wrong:
                    message = f"ret_val {value!r}, expected {benign.expected!r}"
                return Outcome(benign.name, "benign", kind, message, wrong, seconds)

            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                report.attacks = list(pool.map(attack_outcome, ATTACKS))
                report.benign = list(pool.map(benign_outcome, BENIGN))
    finally:
        listener.close()
    return report
