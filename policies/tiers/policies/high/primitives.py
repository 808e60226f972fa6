"""The primitive API that Code as Policies programs call: its typed contract, perception, and planning without
moving.

A program sees the API as functions (``grasp("apple")``, ``get_obj_pos("bowl")``...); :class:`PrimitiveApi` is
the contract an implementation fulfils, named by :data:`PRIMITIVE_NAMES`. What lives here reads only what a robot
sees, or records what a program asks for:

* :class:`ObservationPerception` reads the RGB-D camera's depth, unprojected into a point cloud in the base frame,
  and the per-pixel object labels (the simulator's segmentation, standing in for a detector). Positions are
  centroids of the **visible** surface, not of the object's body, which is what a real perception stack gives too;
* :func:`planning_api` answers perception from one observation and records control calls without moving
  (planner-only runs); :func:`commands_from_program_calls` turns recorded calls into canonical subtasks and
  :func:`program_for_subtasks` is its inverse (code doing a plan).

The implementation that moves a robot is bound to an environment and lives with the application that owns it:
:class:`tiers.apps.evaluation.kitchen_primitives.KitchenPrimitives` (the kitchen's expert motions, IK tracking, the
low tier through ``execute``, :func:`tiers.policies.high.safety.check_motion` and the robot's safety filter on every
action).

Names in the sandbox: ``open``/``close`` are the fixture verbs ``open_fixture``/``close_fixture`` because the
sandbox forbids the name ``open`` (the file builtin).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from tiers.commands.subtasks import Action, Subtask
from tiers.commands.vocabulary import PUSH_TEXT, RELATION_TEXT
from tiers.core.errors import ContractError
from tiers.core.observation import Observation

MIN_PIXELS = 12  # an object covering fewer pixels than this is not reported as seen

# the functions a program may call, in the order of the API doc (tiers.policies.high.code_as_policies.API_DOC)
PRIMITIVE_NAMES: tuple[str, ...] = (
    "get_obj_names",
    "get_obj_pos",
    "get_bbox",
    "get_points",
    "get_ee_pose",
    "get_gripper_opening",
    "move_to",
    "grasp",
    "place",
    "open_fixture",
    "close_fixture",
    "push",
    "execute",
    "say",
)


@runtime_checkable
class ObjectPerception(Protocol):
    """Object queries on what the robot sees now, as the primitive API's perception answers them.

    Implemented by :class:`ObservationPerception` (one camera's depth and the simulator's masks) and, in a
    hierarchy, by the mid tier's fused RGB-D point cloud (:mod:`tiers.policies.hierarchy.planner_perception`).
    Frames and units: base frame, m. A name the scene does not show raises ``ValueError`` naming what it shows.
    """

    def object_names(self) -> list[str]:
        """Names of the objects in view, sorted."""
        ...

    def points(self, name: str, max_points: int | None = None) -> NDArray[np.float64]:
        """(N, 3) m: the object's visible surface points (evenly subsampled to ``max_points``)."""
        ...

    def position(self, name: str) -> NDArray[np.float64]:
        """(3,) m: centroid of the object's visible points."""
        ...

    def bbox(self, name: str) -> NDArray[np.float64]:
        """(2, 3) m: axis-aligned [min, max] corners of the visible points."""
        ...


class SegmentQueries(ABC):
    """The :class:`ObjectPerception` queries every perception answers the same way from an object's visible
    points; a subclass gives ``object_names`` and ``visible_points``."""

    @abstractmethod
    def object_names(self) -> list[str]:
        """Names of the objects in view, sorted."""

    @abstractmethod
    def visible_points(self, name: str) -> NDArray[np.float64]:
        """(N, 3) m: every visible point of ``name``; ``ValueError`` naming what is in view when it is not."""

    def points(self, name: str, max_points: int | None = None) -> NDArray[np.float64]:
        """(N, 3) m: the object's visible surface points (evenly subsampled to ``max_points``)."""
        points = self.visible_points(name)
        if max_points is not None and len(points) > max_points:
            points = points[np.linspace(0, len(points) - 1, max_points).astype(int)]
        return points

    def position(self, name: str) -> NDArray[np.float64]:
        """(3,) m: centroid of the object's visible points."""
        centroid: NDArray[np.float64] = self.visible_points(name).mean(axis=0)
        return centroid

    def bbox(self, name: str) -> NDArray[np.float64]:
        """(2, 3) m: [[x, y, z] min, [x, y, z] max] of the visible points (axis-aligned, base frame)."""
        points = self.visible_points(name)
        return np.stack([points.min(axis=0), points.max(axis=0)])


class ObservationPerception(SegmentQueries):
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

    def visible_points(self, name: str) -> NDArray[np.float64]:
        if name not in self._ids:
            raise ValueError(f"unknown object {name!r}; objects in the scene: {sorted(self._ids)}")
        points: NDArray[np.float64] = self._points[self._labels == self._ids[name]]
        if len(points) < MIN_PIXELS:
            raise ValueError(f"the {name} is not visible from the camera; visible: {self.object_names()}")
        return points


@runtime_checkable
class PrimitiveApi(Protocol):
    """What a Code as Policies program calls, bound to one robot (and one episode).

    Frames and units: positions in the robot base frame, m; quaternions (w, x, y, z). Control primitives return
    True on success; a refused request raises (``ValueError``, or
    :class:`~tiers.policies.high.safety.UnsafeMotionError` for an unsafe motion), which a sandboxed program sees
    as ``ApiError``. Implemented by :class:`tiers.apps.evaluation.kitchen_primitives.KitchenPrimitives`.

    Attributes:
        success: the task's success predicate after the last control step (False before any).
    """

    success: bool

    def api(self) -> dict[str, Callable[..., Any]]:
        """Name -> primitive for every name of :data:`PRIMITIVE_NAMES`, for
        :func:`tiers.services.sandbox.run_sandboxed`."""
        ...

    # -- perception

    def get_obj_names(self) -> list[str]:
        """Names of the objects the camera sees."""
        ...

    def get_obj_pos(self, name: str) -> list[float]:
        """[x, y, z] m: centroid of the object's visible surface."""
        ...

    def get_bbox(self, name: str) -> list[list[float]]:
        """[[xmin, ymin, zmin], [xmax, ymax, zmax]] m of the object's visible surface."""
        ...

    def get_points(self, name: str, max_points: int | None = None) -> list[list[float]]:
        """The object's visible surface points, [[x, y, z], ...] m."""
        ...

    def get_ee_pose(self) -> list[float]:
        """[x, y, z, qw, qx, qy, qz]: tool centre point, m and unit quaternion."""
        ...

    def get_gripper_opening(self) -> float:
        """Distance between the fingertips, m."""
        ...

    # -- control

    def move_to(self, position: list[float], quaternion: list[float] | None = None) -> bool:
        """Straight-line tool move to ``position`` (3,) m, keeping the orientation or turning to ``quaternion``."""
        ...

    def grasp(self, name: str) -> bool:
        """Pick up the object."""
        ...

    def place(self, name: str, relation: str, target: str) -> bool:
        """Put the held object ``relation`` ("in", "on", "to the left of", ...) the ``target``."""
        ...

    def open_fixture(self, name: str) -> bool:
        """Open the drawer or the cabinet."""
        ...

    def close_fixture(self, name: str) -> bool:
        """Close the drawer or the cabinet."""
        ...

    def push(self, name: str, direction: str) -> bool:
        """Push the object "to the left", "to the right", "forward" (away from the robot) or "backward"."""
        ...

    def execute(self, command: str) -> bool:
        """Hand a canonical subtask ("pick up the apple") to the low tier."""
        ...

    def say(self, text: str) -> None:
        """Say something to the people around."""
        ...


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


def program_for_subtasks(plan: Sequence[Subtask]) -> str:
    """Code doing ``plan`` with the primitives, one call per subtask (the inverse of
    :func:`commands_from_program_calls`; what the plumbing server answers Code as Policies with).
    An empty plan is ``say('I cannot do that')``."""
    lines = []
    for step in plan:
        if step.action is Action.PICK:
            lines.append(f"grasp({step.object!r})")
        elif step.action is Action.PLACE:
            assert step.relation is not None
            lines.append(f"place({step.object!r}, {RELATION_TEXT[step.relation]!r}, {step.target!r})")
        elif step.action is Action.PUSH:
            assert step.direction is not None
            lines.append(f"push({step.object!r}, {PUSH_TEXT[step.direction]!r})")
        else:
            lines.append(f"{step.action.value}_fixture({step.object!r})")
    return "\n".join(lines) or "say('I cannot do that')"


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
