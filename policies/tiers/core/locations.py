"""Where tiers finds its YAML presets (``configs/``).

Resolution order: ``$TIERS_CONFIG_DIR``; the ``configs/`` folder of a source checkout (editable
install); the copy shipped inside the wheel as ``tiers/configs``.
"""

from __future__ import annotations

import os
from pathlib import Path

from tiers.core.errors import ConfigError

CONFIG_DIR_ENV = "TIERS_CONFIG_DIR"
# this file is <container>/tiers/core/locations.py; a checkout keeps configs/ next to the containers
_CHECKOUT_CONFIGS = Path(__file__).resolve().parents[3] / "configs"
_WHEEL_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def config_dir() -> Path:
    """The folder holding ``robots/``, ``hierarchies/``, ``train/`` and ``eval/`` presets."""
    from_env = os.environ.get(CONFIG_DIR_ENV)
    if from_env:
        path = Path(from_env)
        if not path.is_dir():
            raise ConfigError(f"${CONFIG_DIR_ENV}={from_env!r} is not a directory")
        return path
    for candidate in (_CHECKOUT_CONFIGS, _WHEEL_CONFIGS):
        if (candidate / "robots").is_dir():
            return candidate
    raise ConfigError(
        f"no configs/ folder found (looked in {_CHECKOUT_CONFIGS} and {_WHEEL_CONFIGS}); set ${CONFIG_DIR_ENV}"
    )


def preset_path(group: str, name_or_path: str | Path) -> Path:
    """Resolve a preset by name (``preset_path("robots", "panda")``) or pass a file path through.

    Raises:
        ConfigError: neither a file nor a preset of that name exists; lists the presets there are.
    """
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: config file not found")
        return candidate
    folder = config_dir() / group
    path = folder / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise ConfigError(f"no {group} preset named {str(name_or_path)!r} in {folder}; known: {', '.join(known)}")
    return path
