"""Can the Isaac Sim backend start here? Checks every requirement without starting (or importing) anything.

Importing ``isaacsim`` is not free of side effects: it bootstraps the Kit kernel and calls ``sys.exit``
when the EULA was not accepted non-interactively (``isaacsim/__init__.py``, ``isaacsim/kit/kit_app.py``
of the 6.2 wheels), and a missing RTX renderer fails deep inside Kit. So the backend asks here first and
raises :class:`IsaacUnavailableError` naming every missing piece.

Requirements (Isaac Sim 6.2):
    - the ``isaacsim`` package (``pip install 'tiers[isaacsim]'``), found with ``importlib.util.find_spec``;
    - CPython 3.12 (the 6.2 wheels are cp312 only);
    - an NVIDIA driver (``nvidia-smi`` on PATH or ``/proc/driver/nvidia/version``) and a visible GPU;
    - a GPU with RT cores: Isaac's RTX renderer cannot start on data-centre GPUs without them
      (:data:`NON_RTX_GPU_PATTERNS`), even headless; GPUs not on that list are allowed to try;
    - the NVIDIA Omniverse EULA accepted: ``OMNI_KIT_ACCEPT_EULA`` in {y, yes, 1} (any case), or an
      ``EULA_ACCEPTED`` file beside the kernel (``isaacsim/kit/EULA_ACCEPTED``), as ``kit_app.check_eula``
      reads them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tiers.core.errors import TiersError

EULA_VARIABLE = "OMNI_KIT_ACCEPT_EULA"
EULA_ACCEPTED_VALUES = ("y", "yes", "1")  # isaacsim/kit/kit_app.py: check_eula
INSTALL_HINT = "pip install 'tiers[isaacsim]'"
DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")

# NVIDIA GPUs without RT cores, matched against `nvidia-smi --query-gpu=name` (upper-cased, word-bounded).
# Data-centre compute parts (Volta, Ampere GA100, Hopper, Blackwell B100/B200/B300), older Tesla/Pascal
# parts, and GeForce GTX cards (Pascal and the Turing GTX 16xx have no RT cores). Isaac Sim's RTX renderer
# needs RT cores, so these cannot run it; a name on no list is let through (the check is a best guess,
# the renderer has the final word).
NON_RTX_GPU_PATTERNS: tuple[str, ...] = (
    r"\bA100\b",
    r"\bA30\b",
    r"\bA800\b",
    r"\bH100\b",
    r"\bH200\b",
    r"\bH800\b",
    r"\bH20\b",
    r"\bGH200\b",
    r"\bB100\b",
    r"\bB200\b",
    r"\bGB200\b",
    r"\bB300\b",
    r"\bGB300\b",
    r"\bV100\b",
    r"\bTITAN V\b",
    r"\bP100\b",
    r"\bP40\b",
    r"\bP4\b",
    r"\bK80\b",
    r"\bM60\b",
    r"\bGTX\b",
)


class IsaacUnavailableError(TiersError, RuntimeError):
    """The Isaac Sim backend cannot start on this machine; ``missing`` lists each unmet requirement."""

    def __init__(self, missing: list[str]):
        self.missing = tuple(missing)
        super().__init__("the Isaac Sim backend cannot start here: " + "; ".join(missing))


def gpu_has_rt_cores(name: str) -> bool:
    """False when ``name`` (as ``nvidia-smi`` prints it) is a known GPU without RT cores, else True."""
    upper = name.upper()
    return not any(re.search(pattern, upper) for pattern in NON_RTX_GPU_PATTERNS)


def _gpu_names() -> tuple[list[str], str | None]:
    """(GPU names, None) from nvidia-smi, or ([], why not)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], "nvidia-smi not found"
    try:
        result = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], f"nvidia-smi failed ({error})"
    if result.returncode != 0:
        return [], f"nvidia-smi failed ({(result.stderr or result.stdout).strip() or result.returncode})"
    return [line.strip() for line in result.stdout.splitlines() if line.strip()], None


def _eula_accepted(environ: Mapping[str, str]) -> bool:
    if environ.get(EULA_VARIABLE, "N").lower() in EULA_ACCEPTED_VALUES:
        return True
    spec = importlib.util.find_spec("isaacsim")
    if spec is None or not spec.submodule_search_locations:
        return False
    for location in spec.submodule_search_locations:
        accepted = Path(location) / "kit" / "EULA_ACCEPTED"
        if accepted.is_file() and accepted.read_text().strip().lower() in EULA_ACCEPTED_VALUES:
            return True
    return False


def check_isaac_requirements(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every unmet requirement of the Isaac Sim backend, one sentence each; empty when it may start.

    Runs ``nvidia-smi`` at most once and imports nothing from Isaac Sim.

    Args:
        environ: the environment to read the EULA variable from; None: ``os.environ``.
    """
    environ = os.environ if environ is None else environ
    missing = []
    try:
        installed = importlib.util.find_spec("isaacsim") is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        missing.append(f"the isaacsim package is not installed ({INSTALL_HINT}, on Python 3.12)")
    if sys.version_info[:2] != (3, 12):
        missing.append(f"Isaac Sim 6.2 needs Python 3.12, this is {sys.version_info[0]}.{sys.version_info[1]}")
    names, problem = _gpu_names()
    if problem is not None:
        driver = "" if DRIVER_VERSION_FILE.exists() else f", no {DRIVER_VERSION_FILE}"
        missing.append(f"no NVIDIA driver ({problem}{driver})")
    elif not names:
        missing.append("no NVIDIA GPU visible (nvidia-smi lists none)")
    elif not any(gpu_has_rt_cores(name) for name in names):
        missing.append(
            f"no GPU with RT cores ({', '.join(names)}): Isaac Sim's RTX renderer needs an RTX GPU, "
            "data-centre GPUs without RT cores cannot start it even headless"
        )
    if not _eula_accepted(environ):
        missing.append(f"the NVIDIA Omniverse EULA is not accepted (set {EULA_VARIABLE}=YES to accept it)")
    return missing


def ensure_isaac_available() -> None:
    """Raise :class:`IsaacUnavailableError` listing every unmet requirement, if any."""
    missing = check_isaac_requirements()
    if missing:
        raise IsaacUnavailableError(missing)
