"""The primitive API that Code as Policies programs call: perception and control over the kitchen.

Perception (:class:`ObservationPerception`) reads only what a robot could see: the RGB-D camera's depth,
unprojected into a point cloud in the base frame, and the per-pixel object labels (the simulator's
segmentation, standing in for a detector). Positions are centroids of the **visible** surface, not of the
object's body, which is what a real perception stack gives too.

Control (:class:`KitchenPrimitives`) moves the robot in a :class:`~tiers.sim.kitchen.env.KitchenEnv`:

* ``grasp``, ``place``, ``open_fixture``, ``close_fixture``, ``push`` run the kitchen's scripted expert motions
  for one canonical subtask (privileged: the expert reads scene state; named so in the docs);
* ``move_to`` tracks a straight Cartesian line to a tool pose with damped-least-squares IK
  (:class:`~tiers.sim.kitchen.motions.MotionTracker`);
* ``execute(command)`` hands a canonical subtask to the low tier: a driver given by the caller (anything with
  ``start(plan, observation)``, ``act(observation)``, ``finished(observation)``, as the hierarchy's low-tier
  drivers have), or the scripted expert when none is given;
* ``say`` records (and forwards) what the robot says.

Every action of every motion (expert, IK or low tier) passes :func:`tiers.policies.high.safety.check_motion`
(finite, joint limits, joint speed, TCP workspace): an unsafe request stops the motion and raises
:class:`~tiers.policies.high.safety.UnsafeMotionError` (a sandboxed program sees it as ``ApiError``). What is
sent then goes through :class:`tiers.deploy.safety.SafetyFilter`, the filter every learned policy's command
passes on a robot (acceleration and Cartesian speed shaping, deviation band); its interventions are counted
in ``KitchenPrimitives.interventions``.

Names in the sandbox: ``open``/``close`` are the fixture verbs ``open_fixture``/``close_fixture`` because the
sandbox forbids the name ``open`` (the file builtin).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from tiers.commands.subtasks import CANONICAL_FORMS, Action, Subtask
from tiers.commands.vocabulary import PUSH_TEXT, RELATION_TEXT
from tiers.core.config import Config
from tiers.core.errors import ContractError
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.policies.high.safety import Workspace, check_motion

MIN_PIXELS = 12  # an object covering fewer pixels than this is not reported as seen


class ObservationPerception:
    """Object queries on one observation's RGB-D camera (see the module docstring).

    Frames and units: points and positions in the robot base frame, m.
    """

    def __init__(self, observation: Observation, camera: str = "front"):
        missing = [
            what
            for what, table in (("depth", observation.depths), ("segmentation", observation.segmentation))
            if camera not in table
        ]
        if missing:
            raise ContractError(
                f"perception needs the {camera!r} camera's {' and '.join(missing)} (render the observation); "
                f"cameras with depth: {sorted(observation.depths)}"
            )
        depth = observation.depths[camera]
        self._points = observation.cameras[camera].unproject(depth)  # (H, W, 3) m, base frame
        valid = np.isfinite(depth) & (depth > 0)
        self._labels = np.where(valid, observation.segmentation[camera], -1)  # (H, W) object id, -1 none
        self._names = dict(observation.object_names)
        self._ids = {name: index for index, name in self._names.items()}

    def object_names(self) -> list[str]:
        """Objects with at least MIN_PIXELS valid depth pixels in view, sorted by name."""
        ids, counts = np.unique(self._labels[self._labels >= 0], return_counts=True)
        return sorted(self._names[int(i)] for i, n in zip(ids, counts, strict=True) if n >= MIN_PIXELS)

    def points(self, name: str, max_points: int | None = None) -> NDArray[np.float64]:
        """(N, 3) m: the object's visible surface points (evenly subsampled to ``max_points``)."""
        if name not in self._ids:
            raise ValueError(f"unknown object {name!r}; objects in the scene: {sorted(self._ids)}")
        points: NDArray[np.float64] = self._points[self._labels == self._ids[name]]
        if len(points) < MIN_PIXELS:
            raise ValueError(f"the {name} is not visible from the camera; visible: {self.object_names()}")
        if max_points is not None and len(points) > max_points:
            points = points[np.linspace(0, len(points) - 1, max_points).astype(int)]
        return points

    def position(self, name: str) -> NDArray[np.float64]:
        """(3,) m: centroid of the object's visible points."""
        centroid: NDArray[np.float64] = self.points(name).mean(axis=0)
        return centroid

    def bbox(self, name: str) -> NDArray[np.float64]:
        """(2, 3) m: [[x, y, z] min, [x, y, z] max] of the visible points (axis-aligned, base frame)."""
        points = self.points(name)
        return np.stack([points.min(axis=0), points.max(axis=0)])


class SubtaskDriver(Protocol):
    """What ``execute`` needs of a low tier (the hierarchy's low-tier drivers have this shape)."""

    def start(self, plan: Any, observation: Observation) -> None: ...

    def act(self, observation: Observation) -> NDArray[np.float32]: ...

    def finished(self, observation: Observation) -> bool: ...


@dataclass
class PrimitivesConfig(Config):
    """Settings of the primitive API."""

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
    """Perception and control primitives over a reset :class:`~tiers.sim.kitchen.env.KitchenEnv`."""

    def __init__(
        self,
        env: Any,
        *,
        low_tier: SubtaskDriver | None = None,
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
        from tiers.services.kinematics import ArmKinematics
        from tiers.sim.kitchen.expert import ScriptedExpert

        self.env = env
        self.spec = env.embodiment
        self.config = config or PrimitivesConfig()
        self.low_tier = low_tier
        self.on_say = on_say
        self.said: list[str] = []
        self.events: list[PrimitiveEvent] = []
        self.commands: list[LanguageCommand] = []  # every subtask handed down by execute()
        model = env.backend.model
        self._kinematics = ArmKinematics(model, joint_names=self.spec.joint_names, site_name=self.spec.ee_frame)
        self._expert = ScriptedExpert.from_kitchen(env.backend)
        self._filter: Any = None  # tiers.deploy.safety.SafetyFilter, built on first motion
        self.interventions = 0  # actions the safety filter changed (slowed, clipped, held) since construction
        self._observation: Observation | None = None  # last observation of a control step
        self._perception: ObservationPerception | None = None  # cached until the robot moves
        self.success = False  # the task's predicate after the last step

    # -- the sandbox API ----------------------------------------------------------------------------------

    def api(self) -> dict[str, Callable[..., Any]]:
        """Name -> primitive, for :func:`tiers.services.sandbox.run_sandboxed`."""
        return {
            "get_obj_names": self.get_obj_names,
            "get_obj_pos": self.get_obj_pos,
            "get_bbox": self.get_bbox,
            "get_points": self.get_points,
            "get_ee_pose": self.get_ee_pose,
            "get_gripper_opening": self.get_gripper_opening,
            "move_to": self.move_to,
            "grasp": self.grasp,
            "place": self.place,
            "open_fixture": self.open_fixture,
            "close_fixture": self.close_fixture,
            "push": self.push,
            "execute": self.execute,
            "say": self.say,
        }

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
        from tiers.sim.kitchen.motions import Motion, MotionTracker, Pose, Segment

        target = np.asarray(position, dtype=np.float64)
        if target.shape != (3,) or not np.all(np.isfinite(target)):
            raise ValueError(f"move_to position must be 3 finite numbers (m), got {position!r}")
        observation = self._current()
        orientation = observation.ee_pose[3:] if quaternion is None else np.asarray(quaternion, dtype=np.float64)
        if orientation.shape != (4,) or not np.isclose(np.linalg.norm(orientation), 1.0, atol=1e-3):
            raise ValueError(f"move_to quaternion must be a unit (w, x, y, z), got {quaternion!r}")
        low, high = np.asarray(self.config.workspace.low), np.asarray(self.config.workspace.high)
        if np.any(target < low) or np.any(target > high):
            from tiers.policies.high.safety import UnsafeMotionError

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
        from tiers.core.protocols import MidLevelPlan

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

    def _safety_filter(self) -> Any:
        if not self.config.safety_filter:
            return None
        if self._filter is None:
            from tiers.deploy.safety import SafetyFilter

            self._filter = SafetyFilter(self.spec, forward_kinematics=self._tcp_position)
        return self._filter

    def _tcp_position(self, q: NDArray[np.float64]) -> NDArray[np.float64]:
        position, _ = self._kinematics.forward(q)
        return np.asarray(position, dtype=np.float64)


def commands_from_program_calls(calls: list[tuple[str, list[Any], dict[str, Any]]]) -> list[Subtask]:
    """The canonical subtasks a program's recorded primitive calls amount to (for planner-only scoring)."""
    steps: list[Subtask] = []
    for name, args, kwargs in calls:
        values = [*args, *kwargs.values()]
        if name == "execute" and values:
            steps.append(Subtask.parse(str(values[0])))
        elif name == "grasp" and values:
            steps.append(Subtask(Action.PICK, str(values[0])))
        elif name == "place" and len(values) >= 3:
            relation = {text: key for key, text in RELATION_TEXT.items()}.get(str(values[1]), values[1])
            steps.append(Subtask(Action.PLACE, str(values[0]), str(values[2]), relation))
        elif name in ("open_fixture", "close_fixture") and values:
            steps.append(Subtask(Action.OPEN if name == "open_fixture" else Action.CLOSE, str(values[0])))
        elif name == "push" and len(values) >= 2:
            direction = {text: key for key, text in PUSH_TEXT.items()}.get(str(values[1]), values[1])
            steps.append(Subtask(Action.PUSH, str(values[0]), direction=direction))
    return steps


def planning_api(observation: Observation, camera: str = "front") -> tuple[dict[str, Callable[..., Any]], list[Any]]:
    """An API for planning without moving: perception answers from ``observation``; control primitives record
    their call (see :func:`commands_from_program_calls`) and report success; ``move_to`` is refused because a
    pose is not a subtask. Returns the API and the list the calls are recorded in."""
    perception: ObservationPerception | None = None

    def seen() -> ObservationPerception:
        nonlocal perception
        if perception is None:
            perception = ObservationPerception(observation, camera)
        return perception

    recorded: list[Any] = []

    def control(name: str) -> Callable[..., bool]:
        def call(*args: Any) -> bool:
            recorded.append((name, list(args), {}))
            commands_from_program_calls([(name, list(args), {})])  # validates: a bad subtask is an ApiError
            return True

        return call

    def move_to(*args: Any) -> bool:
        raise ValueError("move_to needs a robot; planner-only runs accept subtask primitives only")

    api: dict[str, Callable[..., Any]] = {
        "get_obj_names": lambda: seen().object_names(),
        "get_obj_pos": lambda name: seen().position(name),
        "get_bbox": lambda name: seen().bbox(name),
        "get_points": lambda name, max_points=256: seen().points(name, max_points),
        "get_ee_pose": lambda: observation.ee_pose,
        "get_gripper_opening": lambda: observation.gripper_opening,
        "move_to": move_to,
        "say": lambda text: None,
        **{name: control(name) for name in ("grasp", "place", "open_fixture", "close_fixture", "push", "execute")},
    }
    return api, recorded
