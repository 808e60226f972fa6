"""Controllers a deployment can run: a hierarchy from YAML, or a joint-trajectory replay for bring-up.

Every controller is a :class:`tiers.policies.hierarchy.runtime.HierarchyRuntime` (or anything with its
methods: ``reset``, ``step``, ``correct``, ``status``, ``events``), so stop/resume/motion corrections, the
status and the language events work the same whatever drives the arm.

:class:`JointTrajectoryReplay` is the low tier for checking a robot or a ROS graph before any learned model is
involved: it replays a joint trajectory (recorded, or a gentle sweep about the current pose) and stays
correctable ("stop", "move up", "resume") because the runtime around it handles corrections.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tiers.core.embodiment import EmbodimentSpec
from tiers.core.errors import ConfigError, ContractError
from tiers.core.features import CommandSource, CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.core.protocols import MidLevelPlan
from tiers.policies.hierarchy.build import hierarchy_embodiment, load_hierarchy
from tiers.policies.hierarchy.runtime import HierarchyRuntime

REPLAY_PREFIX = "replay:"  # controller spec "replay:<file.npy|file.csv>"
SWEEP = "sweep"  # controller spec: sweep every joint gently about the pose at start
PROBE_PREFIX = "probe:"  # controller spec "probe:<seed>": adversarial outputs to check the safety layer (sim only)


class Controller(Protocol):
    """What a deployment drives: the hierarchy runtime's surface."""

    events: list[Any]

    def reset(self, instruction: str, observation: Observation) -> None: ...

    def step(self, observation: Observation) -> Any: ...

    def correct(self, text: str, *, source: Any = ..., timestamp: float | None = None) -> Any: ...

    def status(self) -> dict[str, Any]: ...


class InstructionAsSubtask:
    """A high tier that hands out the instruction itself as the one subtask, then is done.

    For low tiers that do not read language (a replay): the runtime still gets a command to run, stop,
    resume and nudge.
    """

    def __init__(self) -> None:
        self._instruction = ""
        self._given = False

    def reset(self, instruction: str) -> None:
        self._instruction = instruction or "replay"
        self._given = False

    def next_command(self, observation: Observation) -> LanguageCommand | None:
        if self._given:
            return None
        self._given = True
        return LanguageCommand(self._instruction, CommandStyle.SUBTASK, CommandSource.PLANNER, observation.timestamp)

    def handle_correction(self, correction: LanguageCommand) -> None:
        """A subtask correction replaces the replay's command; there is nothing to re-plan."""


@dataclass
class JointTrajectoryReplay:
    """Low tier replaying joint waypoints, one per control tick (a :class:`LowTierDriver`).

    Attributes:
        waypoints: (N, J+1) joint targets rad + gripper opening m, one per tick; or, with ``relative``,
            offsets (rad, m) added to the configuration at the first start.
        relative: waypoints are offsets from the pose at start (a sweep), not absolute targets.
        ramp_ticks: ticks spent moving from the measured pose to the first waypoint (linear), so a replay
            never starts with a jump.
        loop: start over after the last waypoint, until stopped or given another instruction (the last
            waypoint should then lead smoothly back to the first, as a sweep's does).
    """

    waypoints: NDArray[np.float64]
    relative: bool = False
    ramp_ticks: int = 20
    loop: bool = False

    def __post_init__(self) -> None:
        self.waypoints = np.asarray(self.waypoints, dtype=np.float64)
        if self.waypoints.ndim != 2 or len(self.waypoints) == 0:
            raise ContractError(f"replay waypoints must be (N, J+1), got shape {self.waypoints.shape}")
        if not np.all(np.isfinite(self.waypoints)):
            raise ContractError("replay waypoints hold NaN/inf")
        self._targets: NDArray[np.float64] | None = None  # (ramp + N, J+1) absolute targets of this run
        self._path: NDArray[np.float64] | None = None  # (N, J+1) absolute waypoints of this command
        self._index = 0
        self._command_id: str | None = None

    @classmethod
    def from_file(cls, path: str | Path, *, ramp_ticks: int = 20) -> JointTrajectoryReplay:
        """Load (N, J+1) waypoints from ``.npy`` or ``.csv`` (one row per tick, no header)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"replay trajectory {str(path)!r} does not exist")
        if path.suffix == ".npy":
            waypoints = np.load(path, allow_pickle=False)
        elif path.suffix == ".csv":
            waypoints = np.loadtxt(path, delimiter=",", ndmin=2)
        else:
            raise ConfigError(f"replay trajectory {str(path)!r}: use .npy or .csv (N rows of J+1 values)")
        return cls(waypoints, ramp_ticks=ramp_ticks)

    @classmethod
    def sweep(
        cls, spec: EmbodimentSpec, *, amplitude: float = 0.15, seconds: float = 4.0, cycles: int = 1
    ) -> JointTrajectoryReplay:
        """Every arm joint swings ±``amplitude`` rad (sine, in phase) about the start pose, ``seconds`` per
        cycle, over and over until stopped; the gripper stays. A bring-up check that each joint moves and
        reports."""
        ticks = max(2, round(seconds * cycles * spec.control_rate_hz))
        phase = np.linspace(0.0, 2 * np.pi * cycles, ticks)
        offsets = np.zeros((ticks, spec.dof + 1))
        offsets[:, : spec.dof] = amplitude * np.sin(phase)[:, None]
        return cls(offsets, relative=True, ramp_ticks=0, loop=True)

    def check(self, spec: EmbodimentSpec) -> None:
        if self.waypoints.shape[1] != spec.dof + 1:
            raise ContractError(
                f"replay waypoints have {self.waypoints.shape[1]} columns; robot {spec.name!r} takes {spec.dof + 1}"
            )

    # -- LowTierDriver ------------------------------------------------------------------------------------

    def reset(self) -> None:
        """A new episode: the next start replays from the beginning."""
        self._targets, self._path, self._index, self._command_id = None, None, 0, None

    def start(self, plan: MidLevelPlan, observation: Observation) -> None:
        """Begin the replay for a new command; the same command again (after a nudge or a resume) continues
        from the measured pose where it left off."""
        here = np.append(observation.joint_positions, observation.gripper_opening)
        if plan.command.id == self._command_id and self._targets is not None:
            remaining = self._targets[self._index :]
            self._targets = np.vstack([self._ramp(here, remaining[0] if len(remaining) else here), remaining])
            self._index = 0
            return
        self._command_id = plan.command.id
        path = self.waypoints + here if self.relative else self.waypoints.copy()
        self._path = path
        self._targets = np.vstack([self._ramp(here, path[0]), path])
        self._index = 0

    def act(self, observation: Observation) -> NDArray[np.float32]:
        if self._targets is None:
            raise ContractError("JointTrajectoryReplay.act() before start()")
        if self.loop and self._index >= len(self._targets) and self._path is not None:
            self._targets, self._index = self._path, 0  # the ramp is not repeated
        target: NDArray[np.float32] = self._targets[min(self._index, len(self._targets) - 1)].astype(np.float32)
        self._index += 1
        return target

    def finished(self, observation: Observation) -> bool:
        return not self.loop and self._targets is not None and self._index >= len(self._targets)

    def drop_queued_actions(self) -> None:
        """Nothing is queued: each tick reads the next waypoint."""

    def _ramp(self, start: NDArray[np.float64], end: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.ramp_ticks <= 0:
            return np.zeros((0, len(start)))
        fractions = np.linspace(0.0, 1.0, self.ramp_ticks + 1)[1:, None]
        ramp: NDArray[np.float64] = start + fractions * (end - start)
        return ramp


@dataclass
class SafetyProbe:
    """Low tier that emits what a broken policy might: NaN, ±Inf, targets far outside the joint limits,
    huge jumps, negative or oversized gripper openings, mixed with plausible small motions.

    Run it in simulation to check, on the real graph, that nothing unsafe reaches the command topic
    (``controller: probe:<seed>``); the hierarchy node refuses it in the ``real`` profile.

    Attributes:
        spec: the robot whose limits are attacked.
        seed: of the random stream.
    """

    spec: EmbodimentSpec
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def reset(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def start(self, plan: MidLevelPlan, observation: Observation) -> None:
        """Every command is attacked the same way."""

    def act(self, observation: Observation) -> NDArray[np.float32]:
        lower, upper = self.spec.position_limits
        rng = self._rng
        action = np.append(observation.joint_positions + rng.normal(0.0, 0.02, self.spec.dof), 0.04)
        roll = rng.random()
        if roll < 0.2:
            action[rng.integers(len(action))] = rng.choice([np.nan, np.inf, -np.inf])
        elif roll < 0.4:
            action = np.append(rng.uniform(lower - 2.0, upper + 2.0), rng.uniform(-0.5, 0.5))
        elif roll < 0.5:
            action *= 1e6
        return action.astype(np.float32)

    def finished(self, observation: Observation) -> bool:
        return False

    def drop_queued_actions(self) -> None:
        """Nothing is queued."""


def is_builtin(spec_text: str) -> bool:
    """Whether ``spec_text`` names a built-in controller (sweep, replay, probe) rather than a hierarchy."""
    return spec_text == SWEEP or spec_text.startswith((REPLAY_PREFIX, PROBE_PREFIX))


def controller_embodiment(spec_text: str, robot: EmbodimentSpec) -> EmbodimentSpec:
    """The robot as the controller needs it: a hierarchy may need other camera sizes (e.g. RGB-D at 320x240
    for the mid tier's perception); the sim must render, and the node expect, those."""
    if is_builtin(spec_text):
        return robot
    return hierarchy_embodiment(spec_text, robot)


def build_controller(
    spec_text: str,
    robot: EmbodimentSpec,
    *,
    checkpoint: str = "",
    scene_model: Callable[[EmbodimentSpec], Any] | None = None,
) -> Controller:
    """A controller from its name: ``sweep``, ``replay:<file>``, ``probe:<seed>`` (adversarial outputs, for
    checking the safety layer in simulation), or a hierarchy preset name / YAML path.

    Args:
        spec_text: which controller (see above).
        robot: the robot it drives.
        checkpoint: checkpoint override for a hierarchy's learned tier ("" keeps the YAML's).
        scene_model: makes the scene's static model (a map: fixture geometry, arm FK; no episode state) for a
            hierarchy that plans against it, e.g. :class:`tiers.deploy.ros.scene_model.SceneModel`; called only
            for a hierarchy. None gives the hierarchy no scene (tiers that need one refuse to build).

    Raises:
        ConfigError: unknown controller, a file that does not exist, a hierarchy that does not load.
    """
    if spec_text == SWEEP or spec_text.startswith(REPLAY_PREFIX):
        if spec_text == SWEEP:
            replay = JointTrajectoryReplay.sweep(robot)
        else:
            replay = JointTrajectoryReplay.from_file(spec_text.removeprefix(REPLAY_PREFIX))
        replay.check(robot)
        return HierarchyRuntime(InstructionAsSubtask(), replay, embodiment=robot)
    if spec_text.startswith(PROBE_PREFIX):
        seed = spec_text.removeprefix(PROBE_PREFIX)
        if not seed.isdigit():
            raise ConfigError(f"controller {spec_text!r}: use probe:<integer seed>")
        return HierarchyRuntime(InstructionAsSubtask(), SafetyProbe(robot, int(seed)), embodiment=robot)
    overrides = [f"low.settings.checkpoint={checkpoint}"] if checkpoint else []
    scene = scene_model(robot) if scene_model is not None else None
    hierarchy = load_hierarchy(spec_text, robot=robot, env=scene, overrides=overrides)
    if hierarchy.privileged:
        raise ConfigError(
            f"controller {spec_text!r}: tiers {hierarchy.privileged} read simulator ground truth and cannot run on "
            "a robot (or over ROS); pick a hierarchy without privileged kinds"
        )
    return hierarchy.runtime
