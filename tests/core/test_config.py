"""Typed configs: YAML round trip, overrides, and errors that name the key and the value."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import pytest
import yaml

from tiers.core.config import Config, ConfigError, apply_override, load_config
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.locations import config_dir, preset_path


class Sampler(StrEnum):
    EULER = "euler"
    DDIM = "ddim"


@dataclass
class Optimiser(Config):
    lr: float = 1e-4  # learning rate
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class TrainConfig(Config):
    name: str = "run"
    steps: int = 100
    sampler: Sampler = Sampler.EULER
    optimiser: Optimiser = field(default_factory=Optimiser)
    cameras: list[str] = field(default_factory=lambda: ["front"])
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.steps <= 0:
            raise ValueError(f"steps must be positive, got {self.steps}")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_round_trip_file_object_file(tmp_path: Path) -> None:
    source = _write(
        tmp_path / "train.yaml",
        "name: beso\nsteps: 5\nsampler: ddim\noptimiser: {lr: 3.0e-4, betas: [0.8, 0.9]}\ncameras: [front, wrist]\n",
    )
    config = load_config(TrainConfig, source)
    assert config.optimiser.lr == pytest.approx(3e-4)
    assert config.optimiser.betas == (0.8, 0.9)
    assert config.sampler is Sampler.DDIM
    written = tmp_path / "out.yaml"
    config.to_yaml(written)
    again = load_config(TrainConfig, written)
    assert again == config
    # every key of the source file survives with its value; defaults are written out too
    dumped = yaml.safe_load(written.read_text())
    for key, value in yaml.safe_load(source.read_text()).items():
        assert dumped[key] == value
    assert dumped["seed"] is None


def test_every_shipped_robot_preset_round_trips(tmp_path: Path) -> None:
    presets = sorted((config_dir() / "robots").glob("*.yaml"))
    assert presets, "configs/robots/ is empty"
    for path in presets:
        spec = EmbodimentSpec.load(path)
        out = tmp_path / path.name
        spec.to_yaml(out)
        assert EmbodimentSpec.load(out) == spec
        assert yaml.safe_load(out.read_text()) == spec.to_dict()


def test_unknown_key_is_named_with_the_known_ones(tmp_path: Path) -> None:
    source = _write(tmp_path / "bad.yaml", "steps: 5\noptimiser: {lr: 0.1, momentum: 0.9}\n")
    with pytest.raises(ConfigError) as error:
        load_config(TrainConfig, source)
    message = str(error.value)
    assert str(source) in message
    assert "optimiser.momentum: unknown key" in message
    assert "known keys: lr, betas" in message


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    source = _write(tmp_path / "bad.yaml", "steps: many\n")
    with pytest.raises(ConfigError, match=r"steps: .*got 'many'"):
        load_config(TrainConfig, source)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    source = _write(tmp_path / "bad.yaml", "steps: many\nsampler: rk4\nwat: 1\n")
    with pytest.raises(ConfigError) as error:
        load_config(TrainConfig, source)
    message = str(error.value)
    assert "steps:" in message and "got 'many'" in message
    assert "sampler:" in message and "got 'rk4'" in message
    assert "wat: unknown key" in message


def test_post_init_check_names_the_field() -> None:
    with pytest.raises(ConfigError, match="steps must be positive, got -3"):
        TrainConfig.from_dict({"steps": -3})


def test_overrides_reach_nested_fields_and_parse_values() -> None:
    config = load_config(
        TrainConfig,
        overrides=["steps=7", "--optimiser.lr=1e-3", "optimiser.betas=[0.5, 0.6]", "cameras=[top]", "seed=null"],
    )
    assert config.steps == 7
    assert config.optimiser.lr == pytest.approx(1e-3)
    assert config.optimiser.betas == (0.5, 0.6)
    assert config.cameras == ["top"]
    assert config.seed is None


def test_override_into_a_list_element() -> None:
    spec = EmbodimentSpec.load("panda", overrides=["joints.0.max_velocity=1.0", "control_rate_hz=10"])
    assert spec.joints[0].max_velocity == 1.0
    assert spec.control_period == pytest.approx(0.1)


def test_override_of_unknown_key_fails_like_a_file_would() -> None:
    with pytest.raises(ConfigError, match=r"optimiser\.lrr: unknown key"):
        load_config(TrainConfig, overrides=["optimiser.lrr=1"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("steps", "not of the form key=value"),
        ("=3", "not of the form key=value"),
        ("cameras.5=x", "not an index of a list of 1"),
        ("steps.x=1", "steps is a value, not a mapping"),
    ],
)
def test_malformed_overrides_are_named(override: str, message: str) -> None:
    data: dict[str, object] = {"steps": 3, "cameras": ["front"]}
    with pytest.raises(ConfigError, match=message):
        apply_override(data, override)


def test_missing_file_and_non_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(TrainConfig, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(TrainConfig, _write(tmp_path / "list.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TrainConfig, _write(tmp_path / "broken.yaml", "steps: [1, 2\n"))


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"no robots preset named 'ur5'.*known: .*panda"):
        preset_path("robots", "ur5")


def test_config_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "robots").mkdir()
    monkeypatch.setenv("TIERS_CONFIG_DIR", str(tmp_path))
    assert config_dir() == tmp_path
    monkeypatch.setenv("TIERS_CONFIG_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="is not a directory"):
        config_dir()
