"""The primitive API bound to the kitchen simulator: what Code as Policies programs move the robot with.

:class:`KitchenPrimitives` implements :class:`tiers.policies.high.primitives.PrimitiveApi` over a reset
:class:`~tiers.sim.kitchen.env.KitchenEnv`:

* perception is :class:`~tiers.policies.high.primitives.ObservationPerception` on a freshly rendered observation
  (RGB-D depth and segmentation; what a robot sees);
* ``grasp``, ``place``, ``open_fixture``, ``close_fixture``, ``push`` run the kitchen's scripted expert motions
  for one canonical subtask (privileged: the expert reads scene state; named so in the docs);
* ``move_to`` tracks a straight Cartesian line to a tool pose with damped-least-squares IK
  (:class:`~tiers.sim.kitchen.motions.MotionTracker`);
* ``execute(command)`` hands a canonical subtask to the low tier: a caller-supplied
  :class:`~tiers.core.protocols.LowTierDriver` (``start(plan, observation)``, ``act(observation)``,
  ``finished(observation)``), or the scripted expert when none is given;
* ``say`` records (and forwards) what the robot says.

Every action of every motion (expert, IK or low tier) passes :func:`tiers.policies.high.safety.check_motion`
(finite, joint limits, joint speed, TCP workspace): an unsafe request stops the motion and raises
:class:`~tiers.policies.high.safety.UnsafeMotionError` (a sandboxed program sees it as ``ApiError``). What is
sent then goes through :class:`tiers.deploy.safety.SafetyFilter`, the filter every learned policy's command
passes on a robot (acceleration and Cartesian speed shaping, deviation band); its interventions are counted
in ``KitchenPrimitives.interventions``.

It lives with the applications because it binds the high tier's API to the simulator, the expert and the
deployment's safety filter; the high tier itself sees only the :class:`~tiers.policies.high.primitives.PrimitiveApi`
contract (:class:`~tiers.policies.high.code_as_policies.CodeAsPoliciesRunner` is handed one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.commands.phases import Motion
from tiers.commands.subtasks import CANONICAL_FORMS, Action, Subtask
from tiers.commands.vocabulary import PUSH_TEXT, RELATION_TEXT
from tiers.core.config import Config
from tiers.core.errors import ContractError
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.core.protocols import LowTierDriver, MidLevelPlan
from tiers.deploy.safety import SafetyFilter
from tiers.policies.high.primitives import PRIMITIVE_NAMES, ObservationPerception
from tiers.policies.high.safety import UnsafeMotionError, Workspace, check_motion
from tiers.services.kinematics import ArmKinematics
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.expert import ScriptedExpert
from tiers.sim.kitchen.motions import MotionTracker, Pose, Segment


@dataclass
class PrimitivesConfig(Config):
    """Settings of :class:`KitchenPrimitives`."""

    camera: str = "front"  # the RGB-D camera perception reads
    max_points: int = 512  # default cap of point-cloud query results
    max_steps: int = 900  # control steps one primitive may take before it is abandoned (45 s at 20 Hz)
    settle_steps: int = 4  # control steps held after a move_to converges
    workspace: Workspace = field(default_factory=Workspace)  # TCP box every motion must stay in
    safety_filter: bool = True  # then pass every action through tiers.deploy.safety.SafetyFilter, as on a robot


@dataclass(frozen=True)
class PrimitiveEvent:
    """One primitive call, for logs and tests: its name, arguments, outcome and control steps taken."""

    name: str
    args: tuple[Any, ...]
    ok: bool
    steps: int
    message: str = ""


class KitchenPrimitives:
    """Perception and control primitives over a reset :class:`~tiers.sim.kitchen.env.KitchenEnv` (a
    :class:`~tiers.policies.high.primitives.PrimitiveApi`; see the module docstring)."""

    def __init__(
        self,
        env: KitchenEnv,
        *,
        low_tier: LowTierDriver | None = None,
        config: PrimitivesConfig | None = None,
        on_say: Callable[[str], None] | None = None,
    ):
        """
        Args:
            env: a :class:`~tiers.sim.kitchen.env.KitchenEnv` after ``reset`` (joint-position actions).
            low_tier: who executes ``execute(command)``; None: the scripted expert.
            config: see :class:`PrimitivesConfig`.
            on_say: called with every ``say`` text (e.g. text-to-speech); they are also kept in ``said``.
        """
        self.env = env
        self.spec = env.embodiment
        self.config = config or PrimitivesConfig()
        self.low_tier = low_tier
        self.on_say = on_say
        self.said: list[str] = []
        self.events: list[PrimitiveEvent] = []
        self.commands: list[LanguageCommand] = []  # every subtask handed down by execute()
        kitchen: Any = env.backend  # the MuJoCo kitchen: the IK and the expert read its model
        self._kinematics = ArmKinematics(kitchen.model, joint_names=self.spec.joint_names, site_name=self.spec.ee_frame)
        self._expert = ScriptedExpert.from_kitchen(kitchen)
        self._filter: SafetyFilter | None = None  # built on the first motion
        self.interventions = 0  # actions the safety filter changed (slowed, clipped, held) since construction
        self._observation: Observation | None = None  # last observation of a control step
        self._perception: ObservationPerception | None = None  # cached until the robot moves
        self.success = False  # the task's predicate after the last step

    # -- the sandbox API ----------------------------------------------------------------------------------

    def api(self) -> dict[str, Callable[..., Any]]:
        """Name -> primitive (every name of :data:`~tiers.policies.high.primitives.PRIMITIVE_NAMES`), for
        :func:`tiers.services.sandbox.run_sandboxed`."""
        return {name: getattr(self, name) for name in PRIMITIVE_NAMES}

    # -- perception -----------------------------------------------------------------------------------------

    def perception(self) -> ObservationPerception:
        """Perception on a freshly rendered observation (re-rendered after every motion)."""
        if self._perception is None:
            self._perception = ObservationPerception(self.env.backend.observe(render=True), self.config.camera)
        return self._perception

    def get_obj_names(self) -> list[str]:
        """Names of the objects the camera sees."""
        return self.perception().object_names()

    def get_obj_pos(self, name: str) -> list[float]:
        """[x, y, z] m: centroid of the object's visible surface, base frame."""
        return [float(v) for v in self.perception().position(name)]

    def get_bbox(self, name: str) -> list[list[float]]:
        """[[xmin, ymin, zmin], [xmax, ymax, zmax]] m of the object's visible surface, base frame."""
        return self.perception().bbox(name).tolist()  # type: ignore[no-any-return]

    def get_points(self, name: str, max_points: int | None = None) -> list[list[float]]:
        """The object's visible surface points, [[x, y, z], ...] m, base frame."""
        return self.perception().points(name, max_points or self.config.max_points).tolist()  # type: ignore[no-any-return]

    def get_ee_pose(self) -> list[float]:
        """[x, y, z, qw, qx, qy, qz]: tool centre point, m and unit quaternion, base frame."""
        return [float(v) for v in self._current().ee_pose]

    def get_gripper_opening(self) -> float:
        """Distance between the fingertips, m."""
        return float(self._current().gripper_opening)

    # -- control --------------------------------------------------------------------------------------------

    def move_to(self, position: list[float], quaternion: list[float] | None = None) -> bool:
        """Move the tool centre point in a straight line to ``position`` (3,) m, base frame, keeping the current
        orientation or turning to ``quaternion`` (4,) wxyz. True when it arrived within 1 cm."""
        target = np.asarray(position, dtype=np.float64)
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            raise ValueError(f"move_to position must be 3 finite numbers (m), got {position!r}")
        observation = self._current()
        orientation = observation.ee_pose[3:] if quaternion is None else np.asarray(quaternion, dtype=np.float64)
        if orientation.shape != (4,) or not np.isclose(np.linalg.norm(orientation), 1.0, atol=1e-3):
            raise ValueError(f"move_to quaternion must be a unit (w, x, y, z), got {quaternion!r}")
        low, high = np.asarray(self.config.workspace.low), np.asarray(self.config.workspace.high)
        if np.any(target < low) or np.any(target > high):
            raise UnsafeMotionError(
                f"move_to {target.round(3).tolist()} m is outside the workspace "
                f"{list(self.config.workspace.low)}..{list(self.config.workspace.high)} m"
            )
        tracker = MotionTracker(self._kinematics, self.spec)
        tracker.reset(observation.joint_positions, observation.gripper_opening)
        tracker.begin(
            Segment(Motion.APPROACH, Pose(target, orientation), observation.gripper_opening),
            observation.ee_pose[:3],
        )
        settled = [0]

        def step(obs: Observation) -> tuple[NDArray[np.float64], bool]:
            action, finished = tracker.step(obs.ee_pose[:3], self.env.scene_state())
            if finished:
                settled[0] += 1
            return action, settled[0] > self.config.settle_steps

        steps = self._drive(step)
        arrived = float(np.linalg.norm(self._current().ee_pose[:3] - target)) < 0.01
        self.events.append(PrimitiveEvent("move_to", (target.tolist(),), arrived, steps))
        return arrived

    def grasp(self, name: str) -> bool:
        """Pick up the object (scripted expert motion). True when it is held."""
        return self._subtask("grasp", Subtask(Action.PICK, name))

    def place(self, name: str, relation: str, target: str) -> bool:
        """Put the held object ``relation`` ("in", "on", "to the left of", ...) the ``target``."""
        relations = {text: key for key, text in RELATION_TEXT.items()} | {key.value: key for key in RELATION_TEXT}
        if relation not in relations:
            raise ValueError(f"unknown relation {relation!r}; relations: {list(RELATION_TEXT.values())}")
        return self._subtask("place", Subtask(Action.PLACE, name, target, relations[relation]))

    def open_fixture(self, name: str) -> bool:
        """Open the drawer or the cabinet."""
        return self._subtask("open_fixture", Subtask(Action.OPEN, name))

    def close_fixture(self, name: str) -> bool:
        """Close the drawer or the cabinet."""
        return self._subtask("close_fixture", Subtask(Action.CLOSE, name))

    def push(self, name: str, direction: str) -> bool:
        """Push the object "to the left", "to the right", "forward" (away from the robot) or "backward"."""
        directions = {text: key for key, text in PUSH_TEXT.items()} | {key.value: key for key in PUSH_TEXT}
        if direction not in directions:
            raise ValueError(f"unknown direction {direction!r}; directions: {list(PUSH_TEXT.values())}")
        return self._subtask("push", Subtask(Action.PUSH, name, direction=directions[direction]))

    def execute(self, command: str) -> bool:
        """Hand a canonical subtask ("pick up the apple") to the low tier; True when it reports success.

        The command goes down as a subtask :class:`LanguageCommand` from the planner; with no low tier given,
        the scripted expert executes it.
        """
        try:
            subtask = Subtask.parse(command)
        except ContractError as error:
            raise ValueError(f"{error}; canonical forms: {list(CANONICAL_FORMS)}") from None
        language = subtask.to_command(self.env.backend.time)
        self.commands.append(language)
        if self.low_tier is None:
            return self._subtask("execute", subtask)
        driver = self.low_tier
        driver.start(MidLevelPlan(command=language), self._current())
        steps = self._drive(lambda obs: (np.asarray(driver.act(obs), np.float64), driver.finished(obs)))
        self.events.append(PrimitiveEvent("execute", (command,), True, steps))
        return True

    def say(self, text: str) -> None:
        """Say something to the people around (kept in ``said``, forwarded to ``on_say``)."""
        self.said.append(str(text))
        if self.on_say is not None:
            self.on_say(str(text))

    # -- driving the environment ----------------------------------------------------------------------------

    def _current(self) -> Observation:
        if self._observation is None:
            self._observation = self.env.backend.observe(render=False)
        return self._observation

    def _subtask(self, name: str, subtask: Subtask) -> bool:
        expert = self._expert
        expert.reset([subtask], self.env.scene_state(), self._current())
        steps = self._drive(lambda obs: self._expert_step(obs))
        failure = expert.failure
        ok = failure is None
        self.events.append(PrimitiveEvent(name, (subtask.text,), ok, steps, failure.reason if failure else ""))
        return ok

    def _expert_step(self, observation: Observation) -> tuple[NDArray[np.float64], bool]:
        step = self._expert.act(observation, self.env.scene_state())
        return step.action.astype(np.float64), step.done

    def _drive(self, policy: Callable[[Observation], tuple[NDArray[np.float64], bool]]) -> int:
        """Step the env with ``policy``'s actions, each checked by :func:`check_motion`, until it is done.

        Returns the control steps taken. Raises UnsafeMotionError (before the unsafe action is applied) or
        ValueError when the motion does not finish within ``max_steps``.
        """
        observation = self._current()
        previous = np.append(observation.joint_positions, observation.gripper_opening)
        forward = self._tcp_position
        safety = self._safety_filter()
        if safety is not None:
            safety.reset(observation.joint_positions, observation.gripper_opening)
        self._perception = None  # the scene is about to change
        for steps in range(1, self.config.max_steps + 1):
            action, done = policy(observation)
            if done:
                return steps - 1
            # refuse a request that is unsafe in itself (the program hears why), then let the robot's filter
            # shape what is sent (acceleration, Cartesian speed), exactly as for a learned policy's commands
            check_motion(action, self.spec, previous=previous, forward=forward, workspace=self.config.workspace)
            command = action
            if safety is not None:
                result = safety.filter(action, measured=observation.joint_positions)
                command, self.interventions = result.action, self.interventions + int(result.modified)
            observation, _, _, _, info = self.env.step(np.asarray(command, dtype=np.float32))
            self._observation = observation
            self.success = bool(info["success"])
            previous = action
        raise ValueError(f"motion did not finish within {self.config.max_steps} control steps")

    def _safety_filter(self) -> SafetyFilter | None:
        if not self.config.safety_filter:
            return None
        if self._filter is None:
            self._filter = SafetyFilter(self.spec, forward_kinematics=self._tcp_position)
        return self._filter

    def _tcp_position(self, q: NDArray[np.float64]) -> NDArray[np.float64]:
        position, _ = self._kinematics.forward(q)
        return np.asarray(position, dtype=np.float64)
