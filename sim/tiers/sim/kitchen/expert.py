"""The kitchen benchmark's scripted expert: privileged state + inverse kinematics + motion primitives.

The expert executes a plan of canonical :class:`~tiers.commands.subtasks.Subtask` s closed loop, one
control step per :meth:`ScriptedExpert.act` call, so that whoever owns the loop (recorder, evaluator,
environment) decides when to stop. Every step carries the subtask it serves and the primitive phase
(:class:`~tiers.sim.kitchen.motions.Motion`), which become the dataset's per-frame language labels::

    expert = ScriptedExpert.from_kitchen(kitchen)
    observation = kitchen.reset(layout, render=False)
    expert.reset(task.plan, kitchen.scene_state(), observation)
    while True:
        step = expert.act(observation, kitchen.scene_state())   # step.action: (J+1,) rad + m
        if step.done:
            break
        observation = kitchen.step(step.action, render=False)

Each subtask is a generator ("routine") that yields :class:`~tiers.sim.kitchen.motions.Segment` s and is
resumed with the scene state at the end of each, so it re-plans from what actually happened: a pick checks
``state.grasped`` and re-grasps, a place re-picks a dropped object (or nudges one left at the cabinet's mouth
further in), a push keeps correcting toward the object, an articulation is pulled until its opening is
reached. A routine that runs out of options raises :class:`ExpertGaveUpError`; the expert then stops and
reports a :class:`SubtaskFailure` with the reason.

The geometry it plans with lives beside it: how objects and handles are grasped in :mod:`~tiers.sim.kitchen.grasps`,
where objects are put down (place goals, free counter and fixture spots) in :mod:`~tiers.sim.kitchen.placement`;
this module holds the routines (pick, place, push, drawer, door), their tuning and the sequencing.

Frames: the robot base frame (x away from the robot over the counter, y left, z up), metres, radians.
Everything is deterministic: no randomness, same state and observations -> same actions.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import mujoco
import numpy as np
from numpy.typing import NDArray

from tiers.commands.phases import Motion
from tiers.commands.subtasks import Action, Subtask
from tiers.commands.vocabulary import PUSH_VECTORS, RELATION_VECTORS, FixtureName, Relation
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.observation import Observation
from tiers.services.kinematics import ArmKinematics
from tiers.sim.kitchen.grasps import (
    DEFAULT_FIXTURES,
    FIXTURE_SIDE_Y,
    GRASPS,
    HAND_BODY_BELOW,
    HAND_HALF_LENGTH,
    MIN_TCP_HEIGHT,
    ExpertGaveUpError,
    FixtureGeometry,
    Grasp,
    body_yaw,
    hand_over_fixture,
    plan_grasp,
    rotate_about,
)
from tiers.sim.kitchen.motions import (
    CARTESIAN_SPEED,
    CONTACT_SPEED,
    InverseKinematics,
    MotionTracker,
    Pose,
    Profile,
    Segment,
    down_quaternion,
    nearest_equivalent_yaw,
    reference_yaw,
    tool_yaw,
    wrap_angle,
)
from tiers.sim.kitchen.placement import PlaceGoal, free_spot_in, spatial_spot
from tiers.sim.kitchen.predicates import Placed
from tiers.sim.scene_state import ObjectState, SceneState

if TYPE_CHECKING:
    from tiers.sim.mujoco.kitchen import MujocoKitchen

Vector = NDArray[np.float64]

CARRY_SPEED = 0.22  # m/s, peak tool speed while carrying an object (slower: held objects slip less)
RIM_CARRY_SPEED = 0.15  # m/s, peak tool speed carrying a dish held by its wall or rim (bowl, plate)
CLEAR_Z = 0.24  # m, TCP height of free-space moves with an empty hand (above every fixture but the cabinet)
CARRY_CLEARANCE = 0.19  # m, least height of a carried object's bottom during transport
APPROACH_HEIGHT = 0.08  # m, pre-grasp / pre-place offset above the final pose
GRASP_STEPS = 12  # control steps the fingers get to close (0.6 s at 20 Hz)
RIM_GRASP_STEPS = 20  # control steps for a wall or rim grasp: the fingers travel further, the wall is thin
RELEASE_STEPS = 8  # control steps the fingers get to open
RELEASE_WIDENING = 0.03  # m, how much wider than the held object the fingers open to let go
RELEASE_GAP = 0.012  # m, height of a placed object's bottom above its support when released
MAX_GRASP_ATTEMPTS = 3  # grasps tried per pick (the first and two re-grasps)
MAX_PLACE_ATTEMPTS = 2  # placements tried per place (a failed one re-picks the object)
MAX_STEPS_PER_SUBTASK = 900  # control steps before a subtask is given up (45 s at 20 Hz)
DROP_DISTANCE = 0.1  # m, object centre this far from the TCP while not gripped: it was dropped
HAND_CLEARANCE = 0.012  # m, kept between the hand body and an anchor it passes over
MAX_DROP = 0.05  # m, highest release of an object's bottom above the counter for a spatial placement
# Counter area (m, base frame) spatial placements may use: the layout's free area grown to the fixtures' fronts
WRIST_CAMERA_SIDE = -1.0  # the wrist camera housing sticks out on the hand's -x side (assets/panda/panda.xml)
PUSH_TARGET = 0.12  # m, distance a push aims for (the predicate needs 0.08)
PUSH_ENOUGH = 0.105  # m, displacement at which a push stops
PUSH_STEP = 0.03  # m, tool advance between two closed-loop corrections of a push
PUSH_STANDOFF = 0.025  # m, free gap between fingers and object before a push
PUSH_HEIGHT = 0.028  # m, TCP height above the object's bottom while pushing (capped at half its height)
FINGER_HALF_THICKNESS = 0.011  # m, half the closed fingers' thickness across the closing axis
HANDLE_OPENING = 0.045  # m, finger opening around a handle bar
HANDLE_GRIP = (0.008, 0.03)  # m, finger opening range that means a handle bar is held
DRAWER_OPEN_TARGET = 0.97  # opening fraction a drawer pull aims at (the predicate needs 0.8)
DOOR_OPEN_TARGET = 0.9  # opening fraction a door swing aims at
CLOSED_TARGET = 0.01  # opening fraction a closing push aims at (the predicate needs 0.05)
OPEN_ENOUGH = 0.85  # opening fraction accepted after opening
CLOSED_ENOUGH = 0.03  # opening fraction accepted after closing
CABINET_TILT = 0.6  # rad, approach axis lean from vertical toward +x when reaching into the cabinet
# rad, steeper lean for tall objects held high (can): at CABINET_TILT the wrist (link 6) rode on the cabinet top
CABINET_TILTS: MappingProxyType[str, float] = MappingProxyType({"can": 0.75})
CABINET_DEPTH = 0.09  # m, how far beyond the cabinet's mouth a placed object's centre goes
CABINET_STAGING = 0.13  # m, distance in front of the cabinet's mouth where the tool lines up
CABINET_ENTRY_ABOVE = 0.015  # m, height above the release pose at which the object slides in
CABINET_NUDGE_REACH = 0.06  # m, how far short of the cabinet interior a released object may be nudged in
CABINET_NUDGE_HEIGHT = 0.02  # m, TCP height above the object's bottom while nudging it (at most half its height)
CABINET_CORNER_MARGIN = 0.08  # m, carried objects pass the cabinet's side line at least this far in front of it
DRAWER_FRONT_MARGIN = 0.06  # m, placed object's centre behind the drawer region's front edge (at least)
DOOR_LEAN = 0.26  # rad, hand leaned back from the door on its handle so the hand mount clears the door's top


@dataclass(frozen=True)
class SubtaskFailure:
    """A subtask the expert gave up: which one (``index`` in the plan) and why."""

    index: int
    subtask: Subtask
    reason: str


@dataclass(frozen=True)
class ExpertStep:
    """One control step of the expert.

    Attributes:
        action: (A,) float32 in the joint-position action space: J joint targets (rad), gripper opening (m).
        subtask: the subtask this step executes (its label); None once the plan is over.
        motion: the primitive phase of this step.
        done: the plan is over (finished, or given up: see ``failure``); ``action`` holds the arm still.
        subtask_index: position of ``subtask`` in the plan; None once the plan is over.
        failure: the subtask given up, once one was.
    """

    action: NDArray[np.float32]
    subtask: Subtask | None
    motion: Motion
    done: bool
    subtask_index: int | None = None
    failure: SubtaskFailure | None = None


# --- the expert --------------------------------------------------------------------------------------------

Routine = Generator[Segment, SceneState, None]


class ScriptedExpert:
    """Executes a gold plan in the kitchen with privileged state; see the module docstring."""

    def __init__(
        self,
        kinematics: InverseKinematics,
        embodiment: EmbodimentSpec,
        *,
        fixtures: FixtureGeometry = DEFAULT_FIXTURES,
    ):
        """
        Args:
            kinematics: forward/inverse kinematics of the TCP over the arm joints (``ArmKinematics``).
            embodiment: the robot (joint order and limits, control rate, gripper).
            fixtures: handle and fixture geometry of the kitchen.
        """
        self._embodiment = embodiment
        self._tracker = MotionTracker(kinematics, embodiment)
        self._fixtures = fixtures
        self._max_opening = embodiment.gripper.max_opening
        self._plan: tuple[Subtask, ...] = ()
        self._index = 0
        self._routine: Routine | None = None
        self._routine_started = False
        self._segment: Segment | None = None
        self._subtask_steps = 0
        self._done = True
        self._failure: SubtaskFailure | None = None
        self._state: SceneState | None = None

    @classmethod
    def from_kitchen(cls, kitchen: MujocoKitchen) -> ScriptedExpert:
        """An expert for a :class:`~tiers.sim.mujoco.kitchen.MujocoKitchen` (its model's kinematics and fixtures)."""
        spec = kitchen.embodiment
        kinematics = ArmKinematics(kitchen.model, joint_names=spec.joint_names, site_name=spec.ee_frame)
        return cls(kinematics, spec, fixtures=FixtureGeometry.from_model(kitchen.model))

    # -- public API ---------------------------------------------------------------------------------------

    @property
    def failure(self) -> SubtaskFailure | None:
        """The subtask given up in this episode, None if none was."""
        return self._failure

    @property
    def done(self) -> bool:
        return self._done

    def reset(self, plan: Sequence[Subtask], state: SceneState, observation: Observation) -> None:
        """Start executing ``plan`` from the scene ``state`` and the robot's ``observation``."""
        self._plan = tuple(plan)
        self._index = 0
        self._routine = None
        self._segment = None
        self._done = not self._plan
        self._failure = None
        self._state = state
        self._tracker.reset(observation.joint_positions, observation.gripper_opening)

    def act(self, observation: Observation, state: SceneState) -> ExpertStep:
        """The action for this control step, with its labels (see :class:`ExpertStep`)."""
        self._state = state
        measured = observation.ee_pose[:3]
        while not self._done and self._segment is None:
            self._advance(state, measured)
        if self._done or self._segment is None:
            hold = self._tracker.hold_action().astype(np.float32)
            return ExpertStep(hold, None, Motion.IDLE, True, None, self._failure)
        subtask, index, motion = self._plan[self._index], self._index, self._segment.motion
        action, finished = self._tracker.step(measured, state)
        self._subtask_steps += 1
        if finished:
            self._segment = None
        if self._subtask_steps > MAX_STEPS_PER_SUBTASK:
            self._give_up(f"timed out after {MAX_STEPS_PER_SUBTASK} control steps")
        return ExpertStep(action.astype(np.float32), subtask, motion, False, index, None)

    # -- sequencing ---------------------------------------------------------------------------------------

    def _advance(self, state: SceneState, measured: Vector) -> None:
        """Pull the next segment from the current routine, moving on to the next subtask when it ends."""
        if self._routine is None:
            if self._index >= len(self._plan):
                self._done = True
                return
            self._routine = self._routine_for(self._plan[self._index], state)
            self._routine_started = False
            self._subtask_steps = 0
        try:
            segment = self._routine.send(state) if self._routine_started else next(self._routine)
        except StopIteration:
            self._routine = None
            self._index += 1
            return
        except ExpertGaveUpError as error:
            self._give_up(str(error))
            return
        self._routine_started = True
        self._segment = segment
        self._tracker.begin(segment, measured)

    def _give_up(self, reason: str) -> None:
        self._failure = SubtaskFailure(self._index, self._plan[self._index], reason)
        self._done = True
        self._routine = None
        self._segment = None

    def _routine_for(self, subtask: Subtask, state: SceneState) -> Routine:
        if subtask.action is Action.PICK:
            return self._pick(subtask.object, state, self._next_place(subtask))
        if subtask.action is Action.PLACE:
            return self._place(subtask, state)
        if subtask.action is Action.PUSH:
            return self._push(subtask, state)
        opening = subtask.action is Action.OPEN
        if subtask.object == FixtureName.DRAWER:
            return self._drawer(opening, state)
        return self._door(opening, state)

    def _next_place(self, pick: Subtask) -> Subtask | None:
        following = self._plan[self._index + 1] if self._index + 1 < len(self._plan) else None
        if following is not None and following.action is Action.PLACE and following.object == pick.object:
            return following
        return None

    # -- shared moves -------------------------------------------------------------------------------------

    def _travel(
        self, goal: Pose, gripper: float, motion: Motion, clear_z: float, lift: Motion, speed: float = CARTESIAN_SPEED
    ) -> Routine:
        """Rise to ``clear_z`` (labelled ``lift``), cross above ``goal`` at that height, then go down to it,
        at ``speed`` m/s peak."""
        here = self._tracker.pose
        far = np.linalg.norm(goal.position[:2] - here.position[:2]) > 0.04
        if far and here.position[2] < clear_z - 0.01:
            yield Segment(lift, here.moved((0.0, 0.0, clear_z - here.position[2])), gripper, speed, settle=None)
        if far:
            above = np.array([goal.position[0], goal.position[1], max(clear_z, goal.position[2])])
            start = np.array([*here.position[:2], max(clear_z, here.position[2])])
            for waypoint in self._around_cabinet_corner(start, above):
                yield Segment(motion, Pose(waypoint, here.quaternion), gripper, speed, settle=None)
            yield Segment(motion, Pose(above, goal.quaternion), gripper, speed, settle=0.02)
        yield Segment(motion, goal, gripper, speed)

    def _release_and_retreat(self, opening: float, retreat: Vector) -> Routine:
        """Open the fingers to ``opening`` m in place, then move by ``retreat`` (3,) m."""
        here = self._tracker.pose
        yield Segment(Motion.RELEASE, here, opening, settle=None, hold=RELEASE_STEPS)
        yield Segment(Motion.RETREAT, here.moved(retreat), opening, settle=None)

    # -- pick ---------------------------------------------------------------------------------------------

    def _pick(self, name: str, state: SceneState, place: Subtask | None) -> Routine:
        """Grasp ``name`` from above, verify the grasp, lift it; re-grasp from the new state on a miss."""
        if name not in state.objects:
            raise ExpertGaveUpError(f"the {name} is not in the scene")
        reason = ""
        for attempt in range(MAX_GRASP_ATTEMPTS):
            if not _dropped(name)(state) and state.gripper_opening < 0.079:
                return
            grasp = plan_grasp(state, name, fixture_front_x=self._fixtures.drawer_unit_front_x)
            pose = Pose(grasp.position, down_quaternion(grasp.yaw))
            if place is not None and place.target == FixtureName.CABINET:  # held leaning: it goes in from the front
                pose = self._leaning_grasp(grasp, state, name)
            above = Pose(pose.position - APPROACH_HEIGHT * _approach_axis(pose.quaternion), pose.quaternion)
            yield from self._travel(above, grasp.opening, Motion.APPROACH, CLEAR_Z, Motion.RETREAT)
            follow = self._following(name, state.objects[name].position[:2].copy(), pose)
            yield Segment(Motion.DESCEND, pose, grasp.opening, speed=CONTACT_SPEED, path=follow,
                          length=APPROACH_HEIGHT, settle=0.004)  # fmt: skip
            pose = follow(pose, 1.0)
            hold = RIM_GRASP_STEPS if GRASPS[name].rim_segments else GRASP_STEPS
            state = yield Segment(Motion.GRASP, pose, 0.0, settle=None, hold=hold)
            if state.grasped == name:
                lift_to = max(CLEAR_Z, grasp.position[2] + 0.12)
                state = yield Segment(Motion.LIFT, pose.moved((0.0, 0.0, lift_to - grasp.position[2])), 0.0)
                if not _dropped(name)(state):
                    return
                reason = f"the {name} slipped out while lifting"
            else:
                reason = f"closing on the {name} did not hold it (attempt {attempt + 1})"
            yield from self._release_and_retreat(grasp.opening, np.array([0.0, 0.0, 0.1]))
            state = yield Segment(Motion.RETREAT, self._tracker.pose, grasp.opening, settle=None, hold=4)
        raise ExpertGaveUpError(reason or f"could not grasp the {name}")

    def _leaning_grasp(self, grasp: Grasp, state: SceneState, name: str) -> Pose:
        """Grasp pose leaning CABINET_TILT(S) (upright object, tilted hand) whose hold the arm can also keep with
        the lean turned toward +x in front of the cabinet: the most comfortable of the four lean/closing pairs."""
        inside = np.array([self._fixtures.cabinet_mouth_x + CABINET_DEPTH, state.regions["cabinet"].center[1],
                           grasp.position[2] + state.regions["cabinet"].low[2] + RELEASE_GAP])  # fmt: skip
        tilt = CABINET_TILTS.get(name, CABINET_TILT)
        best: tuple[float, Pose] | None = None
        for flip in (0.0, np.pi):
            yaw = grasp.yaw + flip
            for side in (-np.pi / 2, np.pi / 2):
                lean = yaw + side
                if name == "cup" and np.cos(lean - body_yaw(state.objects[name])) < 0:
                    continue  # the hand must stay off the cup's handle (body +x): lean toward it
                pose = Pose(grasp.position, down_quaternion(yaw, tilt, lean=lean))
                there = Pose(inside, down_quaternion(yaw - lean, tilt, lean=0.0))
                cost = self._sweep_cost([pose, there])
                if best is None or cost < best[0]:
                    best = (cost, pose)
        assert best is not None
        return best[1]

    def _following(self, name: str, planned: Vector, goal: Pose) -> Callable[[Pose, float], Pose]:
        """Straight path to ``goal`` shifted by how far object ``name`` has moved from ``planned`` (2,) xy since
        planning (closed loop on objects that roll or get nudged)."""

        def path(start: Pose, s: float) -> Pose:
            assert self._state is not None
            shift = self._state.objects[name].position[:2] - planned
            return start.interpolate(goal.moved((shift[0], shift[1], 0.0)), s)

        return path

    # -- place --------------------------------------------------------------------------------------------

    def _place(self, subtask: Subtask, state: SceneState) -> Routine:
        """Carry the held object to its goal, set it down, let go and verify; re-pick and retry once."""
        assert subtask.relation is not None and subtask.target is not None
        name, goal_term = subtask.object, Placed(subtask.object, subtask.relation, subtask.target)
        verdict = ""
        for attempt in range(MAX_PLACE_ATTEMPTS):
            if _dropped(name)(state):
                state = yield from self._collect(self._pick(name, state, subtask))
                if _dropped(name)(state):
                    raise ExpertGaveUpError(f"the {name} is not held and could not be picked up again")
            goal = self._place_goal(state, subtask)
            if goal.from_front:
                state = yield from self._collect(self._insert_front(name, goal, state))
            else:
                state = yield from self._collect(self._lower_from_above(name, goal, state))
            result = goal_term(state, state)
            if not result.success and goal.from_front and self._at_cabinet_mouth(state, name):
                state = yield from self._collect(self._nudge_into_cabinet(name, state))
                result = goal_term(state, state)
            if result.success:
                return
            verdict = result.reason
            if attempt + 1 < MAX_PLACE_ATTEMPTS and state.grasped != name and not self._reachable_again(state, name):
                break
        raise ExpertGaveUpError(f"placing failed: {verdict}")

    def _collect(self, routine: Routine) -> Generator[Segment, SceneState, SceneState]:
        """Run ``routine`` inside another one and return the scene state after its last segment."""
        assert self._state is not None
        state = self._state
        try:
            segment = next(routine)
            while True:
                state = yield segment
                segment = routine.send(state)
        except StopIteration:
            return state

    def _reachable_again(self, state: SceneState, name: str) -> bool:
        """Whether a dropped object lies somewhere a top-down grasp can get it (on the counter, upright-ish)."""
        obj = state.objects[name]
        return bool(obj.bounds.low[2] < 0.02 and 0.12 < obj.position[0] < 0.7 and abs(obj.position[1]) < 0.5)

    def _held_geometry(self, state: SceneState, name: str) -> tuple[Vector, float]:
        """((2,) object centre minus TCP, xy m; TCP height above the object's bottom, m)."""
        obj = state.objects[name]
        tcp = state.ee_position
        return obj.bounds.center[:2] - tcp[:2], float(tcp[2] - obj.bounds.low[2])

    def _lower_from_above(self, name: str, goal: PlaceGoal, state: SceneState) -> Routine:
        """Transport at carrying height, lower onto the goal, release, retreat up."""
        offset, hang = self._held_geometry(state, name)
        current_yaw = tool_yaw(self._tracker.pose.quaternion)
        yaw = current_yaw if goal.yaw is None else goal.yaw
        turn = wrap_angle(yaw - current_yaw)
        c, s = np.cos(turn), np.sin(turn)
        rotated = np.array([c * offset[0] - s * offset[1], s * offset[0] + c * offset[1]])
        tcp = np.array([*(goal.centre - rotated), goal.bottom + hang])
        pose = Pose(tcp, down_quaternion(yaw))
        carry_z = max(CLEAR_Z, CARRY_CLEARANCE + hang, tcp[2] + APPROACH_HEIGHT)
        dropped = _dropped(name)
        for segment in self._travel(
            pose.moved((0, 0, APPROACH_HEIGHT)), 0.0, Motion.TRANSPORT, carry_z, Motion.LIFT, _carry_speed(name)
        ):
            state = yield _with_until(segment, dropped)
            if dropped(state):
                return
        yield Segment(Motion.LOWER, pose, 0.0, speed=CONTACT_SPEED, settle=0.004)
        opening = min(self._max_opening, state.gripper_opening + RELEASE_WIDENING)
        yield from self._release_and_retreat(opening, np.array([0.0, 0.0, 0.1]))

    def _insert_front(self, name: str, goal: PlaceGoal, state: SceneState) -> Routine:
        """Line up in front of the cabinet with the tool leaning in, slide the object in, release, back out.

        An object picked for the cabinet is already held leaning (upright object, tilted hand): the hand only
        turns about the vertical so that it leans toward +x. Otherwise the hand tilts here, object and all.
        """
        assert goal.yaw is not None
        current = self._tracker.pose.quaternion
        approach = _approach_axis(current)
        yaw = goal.yaw
        if np.linalg.norm(approach[:2]) > 0.2:  # already leaning: turn the lean toward +x
            yaw = tool_yaw(current) - float(np.arctan2(approach[1], approach[0]))
        quaternion = down_quaternion(yaw, goal.tilt, lean=0.0)
        mouth = self._fixtures.cabinet_mouth_x
        dropped = _dropped(name)
        hang = self._held_geometry(state, name)[1]
        carry_z = max(CLEAR_Z, CARRY_CLEARANCE + hang)
        staging = np.array([mouth - CABINET_STAGING, goal.centre[1], goal.bottom + hang + CABINET_ENTRY_ABOVE])
        here = self._tracker.pose
        if self._cuts_cabinet_corner(here.position, staging):  # back out in front of it first
            front = np.array([staging[0], here.position[1], max(carry_z, here.position[2])])
            state = yield _with_until(
                Segment(Motion.TRANSPORT, Pose(front, here.quaternion), 0.0, _carry_speed(name)), dropped
            )
            if dropped(state):
                return
        for segment in self._travel(
            Pose(staging, quaternion), 0.0, Motion.TRANSPORT, carry_z, Motion.LIFT, _carry_speed(name)
        ):
            state = yield _with_until(segment, dropped)
            if dropped(state):
                return
        offset, hang = self._held_geometry(state, name)  # measured with the tool leaning
        inside = np.array([goal.centre[0] - offset[0], staging[1], goal.bottom + hang])
        entry = np.array([inside[0], inside[1], staging[2]])
        yield Segment(Motion.TRANSPORT, Pose(entry, quaternion), 0.0, speed=CONTACT_SPEED)
        yield Segment(Motion.LOWER, Pose(inside, quaternion), 0.0, speed=CONTACT_SPEED, settle=0.006)
        opening = min(self._max_opening, state.gripper_opening + RELEASE_WIDENING)
        here = self._tracker.pose
        yield Segment(Motion.RELEASE, here, opening, settle=None, hold=RELEASE_STEPS)
        yield Segment(Motion.RETREAT, here.moved((0.0, 0.0, 0.02)), opening, settle=None)
        yield Segment(Motion.RETREAT, Pose(staging, quaternion), opening, settle=None)

    def _at_cabinet_mouth(self, state: SceneState, name: str) -> bool:
        """Whether released object ``name`` rests on the cabinet floor's front edge, short of the interior
        (the arm could not reach deep enough: its forearm rode on the cabinet top)."""
        obj, region = state.objects[name], state.regions["cabinet"]
        centre = obj.bounds.center
        return bool(
            state.grasped != name
            and region.low[0] - CABINET_NUDGE_REACH < centre[0] < region.low[0]
            and region.low[1] < centre[1] < region.high[1]
            and abs(obj.bounds.low[2] - region.low[2]) < 0.03
        )

    def _nudge_into_cabinet(self, name: str, state: SceneState) -> Routine:
        """Push an object left at the cabinet's mouth further in with the closed fingers, then back out."""
        obj = state.objects[name]
        quaternion = self._tracker.pose.quaternion
        height = obj.bounds.low[2] + min(CABINET_NUDGE_HEIGHT, (obj.bounds.high[2] - obj.bounds.low[2]) / 2)
        y = obj.bounds.center[1]
        start = np.array([obj.bounds.low[0] - PUSH_STANDOFF, y, height])
        staging = np.array([start[0] - 0.06, y, max(height, self._tracker.pose.position[2])])
        yield Segment(Motion.APPROACH, Pose(staging, quaternion), 0.0, settle=0.01)
        yield Segment(Motion.APPROACH, Pose(start, quaternion), 0.0, speed=CONTACT_SPEED, settle=0.006)
        pushed = start + np.array([PUSH_STANDOFF + CABINET_NUDGE_REACH, 0.0, 0.0])
        yield Segment(
            Motion.PUSH, Pose(pushed, quaternion), 0.0, speed=CONTACT_SPEED, profile=Profile.LINEAR, settle=None
        )
        yield Segment(Motion.RETREAT, Pose(staging, quaternion), 0.0, settle=None)

    def _around_cabinet_corner(self, start: Vector, end: Vector) -> list[Vector]:
        """Waypoints (3,) that keep a move from ``start`` to ``end`` (3,) out of the cabinet's front corner when
        it leaves the space in front of (or inside) the cabinet below its top: straight back toward the robot,
        then sideways past the side line, at ``start``'s height. Empty when the straight move is clear."""
        side = -FIXTURE_SIDE_Y
        if start[1] > side or end[1] <= side:
            return []
        fraction = (side - start[1]) / (end[1] - start[1])
        safe_x = self._fixtures.cabinet_mouth_x - CABINET_CORNER_MARGIN
        if start[0] + fraction * (end[0] - start[0]) <= safe_x:
            return []
        x = min(start[0], safe_x - 0.02)
        return [np.array([x, start[1], start[2]]), np.array([x, side + 0.02, start[2]])]

    def _cuts_cabinet_corner(self, start: Vector, end: Vector) -> bool:
        """Whether the straight xy path from ``start`` to ``end`` passes the cabinet's side line (y =
        -FIXTURE_SIDE_Y) less than CABINET_CORNER_MARGIN in front of its mouth."""
        if start[1] <= -FIXTURE_SIDE_Y or end[1] >= -FIXTURE_SIDE_Y:
            return bool(start[1] <= -FIXTURE_SIDE_Y and start[0] > end[0] + 0.02)
        fraction = (start[1] + FIXTURE_SIDE_Y) / (start[1] - end[1])
        x = start[0] + fraction * (end[0] - start[0])
        return bool(x > self._fixtures.cabinet_mouth_x - CABINET_CORNER_MARGIN)

    def _place_goal(self, state: SceneState, subtask: Subtask) -> PlaceGoal:
        """Where to release the held object for ``subtask`` (see :class:`PlaceGoal`)."""
        assert subtask.relation is not None and subtask.target is not None
        name, target, relation = subtask.object, subtask.target, subtask.relation
        obj = state.objects[name]
        if relation in RELATION_VECTORS or relation is Relation.NEXT_TO:
            return self._spatial_goal(state, name, relation, target)
        if target in state.regions and target in set(FixtureName):
            return self._fixture_goal(state, obj, target)
        base = state.objects[target]
        if target == "basket":
            return self._basket_goal(base, obj)
        if target in ("bowl", "plate"):  # containers: down onto the floor
            floor = base.bounds.low[2] + 0.012
            return PlaceGoal(base.bounds.center[:2], floor + RELEASE_GAP)
        return PlaceGoal(base.bounds.center[:2], base.bounds.high[2] + RELEASE_GAP)  # stacking

    def _fixture_goal(self, state: SceneState, obj: ObjectState, fixture: str) -> PlaceGoal:
        region = state.regions[fixture]
        centre = region.center[:2].copy()
        if fixture == FixtureName.DRAWER:
            front = self._fixtures.drawer_unit_front_x
            low = region.low[0] + DRAWER_FRONT_MARGIN
            centre[0] = max(low, min((region.low[0] + front) / 2, region.high[0] - DRAWER_FRONT_MARGIN))
            yaw = nearest_equivalent_yaw(0.0, reference_yaw(np.append(centre, 0.0)))  # long side along y
            # along y only: the open drawer is reachable from above only between its front and the unit's front
            spot = free_spot_in(region, centre, obj, state, along_x=False)
            return PlaceGoal(spot, region.low[2] + RELEASE_GAP, yaw=yaw)
        if fixture == FixtureName.CABINET:
            centre[0] = self._fixtures.cabinet_mouth_x + CABINET_DEPTH
            return PlaceGoal(
                centre,
                region.low[2] + RELEASE_GAP,
                yaw=np.pi / 2,
                tilt=CABINET_TILTS.get(obj.name, CABINET_TILT),
                from_front=True,
            )
        return PlaceGoal(free_spot_in(region, centre, obj, state), region.low[2] + RELEASE_GAP)

    def _basket_goal(self, basket: ObjectState, obj: ObjectState) -> PlaceGoal:
        """Beside the basket's carrying handle (which spans its length along its x axis), fingers along it."""
        heading = body_yaw(basket)
        across = np.array([-np.sin(heading), np.cos(heading)])  # the basket's y axis
        if np.dot(across, basket.position[:2]) > 0:  # take the half nearer the robot
            across = -across
        centre = basket.position[:2] + BASKET_SIDE_OFFSET * across
        yaw = nearest_equivalent_yaw(heading, reference_yaw(np.append(centre, 0.0)))  # fingers along the handle
        # lowered as deep as the handle and the walls let it go: it ends wedged between them, or on the floor
        return PlaceGoal(centre, basket.bounds.low[2] + BASKET_FLOOR + RELEASE_GAP, yaw=yaw)

    def _spatial_goal(self, state: SceneState, name: str, relation: Relation, anchor: str) -> PlaceGoal:
        """A free counter spot ``relation`` the anchor, about SPOT_GAP from it (see :func:`spatial_spot`)."""
        obj, ref = state.objects[name], state.objects[anchor]
        directions = [RELATION_VECTORS[relation]] if relation in RELATION_VECTORS else list(RELATION_VECTORS.values())
        current_yaw = tool_yaw(self._tracker.pose.quaternion)
        hang = self._held_geometry(state, name)[1]
        others = [o.bounds for n, o in state.objects.items() if n not in (name, anchor)]
        best: tuple[float, PlaceGoal] | None = None
        for relaxed, direction in [(relaxed, d) for relaxed in (False, True) for d in directions]:
            if relaxed and best is not None:  # the relaxed search only when the strict one found nothing
                break
            heading = float(np.arctan2(direction[1], direction[0]))
            across = abs(np.cos(current_yaw - heading)) < 0.5  # closing axis already across the direction
            for turn in (0.0, np.pi / 2):
                crossing = across != (turn != 0.0)  # fingers and hand body across the direction: hand stays clear
                yaw = nearest_equivalent_yaw(current_yaw + turn, reference_yaw(ref.position))
                half = obj.bounds.size[:2] / 2 if turn == 0.0 else obj.bounds.size[1::-1] / 2
                axis = int(np.argmax(np.abs(direction)))
                bottom, min_gap = RELEASE_GAP + 0.003, 0.0
                if not crossing:  # the hand body reaches over the anchor: pass above it, or keep away from it
                    lifted = ref.bounds.high[2] + HAND_CLEARANCE - hang - HAND_BODY_BELOW
                    if lifted <= MAX_DROP:
                        bottom = max(bottom, lifted)
                    else:
                        min_gap = HAND_HALF_LENGTH - half[axis]
                found = spatial_spot(ref.bounds, half, direction, others, state, min_gap, relaxed=relaxed)
                if found is not None:
                    score = found[0] - (0.0 if crossing else 0.05)
                    if best is None or score > best[0]:
                        best = (score, PlaceGoal(found[1], bottom, yaw=yaw))
        if best is None:
            raise ExpertGaveUpError(f"no free spot {relation.value} the {anchor}")
        return best[1]

    # -- push ---------------------------------------------------------------------------------------------

    def _push(self, subtask: Subtask, state: SceneState) -> Routine:
        """Closed fingers behind the object, slide it along the direction with lateral corrections."""
        assert subtask.direction is not None
        name = subtask.object
        direction = PUSH_VECTORS[subtask.direction]
        start = state.objects[name].position[:2].copy()
        across = np.array([-direction[1], direction[0]])
        for _attempt in range(2):
            obj = state.objects[name]
            half = obj.bounds.size[:2] / 2
            extent = float(np.abs(direction) @ half)
            centre = obj.bounds.center[:2]
            height = obj.bounds.low[2] + min(PUSH_HEIGHT, obj.bounds.size[2] / 2)
            contact = centre - direction * (extent + FINGER_HALF_THICKNESS + PUSH_STANDOFF)
            point = np.array([contact[0], contact[1], max(height, MIN_TCP_HEIGHT)])
            yaw = self._push_yaw(point, direction, obj.bounds.high[2] - point[2] > HAND_BODY_BELOW)
            pose = Pose(point, down_quaternion(yaw))
            above = pose.moved((0.0, 0.0, obj.bounds.high[2] + 0.05 - point[2]))
            yield from self._travel(above, 0.0, Motion.APPROACH, CLEAR_Z, Motion.RETREAT)
            yield Segment(Motion.DESCEND, pose, 0.0, speed=CONTACT_SPEED, settle=0.005)
            travelled = 0.0
            budget = PUSH_TARGET + PUSH_STANDOFF + 0.05
            while travelled < budget:
                moved = float((state.objects[name].position[:2] - start) @ direction)
                if moved >= PUSH_ENOUGH:
                    break
                here = self._tracker.pose
                lateral = float((state.objects[name].bounds.center[:2] - here.position[:2]) @ across)
                shift = direction * PUSH_STEP + across * 0.5 * lateral
                state = yield Segment(
                    Motion.PUSH, here.moved((shift[0], shift[1], 0.0)), 0.0,
                    speed=CONTACT_SPEED, profile=Profile.LINEAR, settle=None,
                )  # fmt: skip
                travelled += PUSH_STEP
            back = np.append(-direction * 0.02, 0.0)
            state = yield Segment(Motion.RETREAT, self._tracker.pose.moved(back), 0.0, settle=None)
            state = yield Segment(Motion.RETREAT, self._tracker.pose.moved((0.0, 0.0, 0.1)), 0.0, settle=None)
            if float((state.objects[name].position[:2] - start) @ direction) >= PUSH_ENOUGH - 0.01:
                return
        moved = float((state.objects[name].position[:2] - start) @ direction)
        raise ExpertGaveUpError(f"the {name} moved only {moved:.3f} m {subtask.direction.value}")

    def _push_yaw(self, point: Vector, direction: Vector, tall: bool) -> float:
        """Closing-axis yaw for pushing along ``direction`` from ``point``: the broad side of the closed fingers
        against the object, turned (up to 60°) when the hand body would hit a fixture; the wrist camera always
        faces away from the object. For a ``tall`` object the hand body must not reach over it either."""
        side = WRIST_CAMERA_SIDE  # the camera bulges out on this side of tool x: turn it away from the object
        across = float(np.arctan2(side * direction[0], -side * direction[1]))
        reference = reference_yaw(point)
        for turn in (0.0, np.pi / 6, -np.pi / 6, np.pi / 3, -np.pi / 3):
            closing = np.array([np.cos(across + turn), np.sin(across + turn)])
            reach = HAND_HALF_LENGTH * abs(np.sin(turn)) + 0.025 * abs(np.cos(turn))  # hand body ahead of the TCP
            if tall and reach > FINGER_HALF_THICKNESS + PUSH_STANDOFF + 0.01:
                continue
            if self._hand_clear(point, closing, direction):
                return nearest_equivalent_yaw(across + turn, reference, period=2 * np.pi)
        return nearest_equivalent_yaw(across, reference, period=2 * np.pi)

    def _hand_clear(self, point: Vector, closing: Vector, direction: Vector) -> bool:
        """Whether the hand body (HAND_HALF_LENGTH along ``closing``) stays off the drawer unit and the cabinet
        while the TCP pushes from ``point`` (3,) PUSH_TARGET m along ``direction`` (2,)."""
        yaw = float(np.arctan2(closing[1], closing[0]))
        front = self._fixtures.drawer_unit_front_x
        return not any(hand_over_fixture(point[:2] + travel * direction, yaw, front) for travel in (0.0, PUSH_TARGET))

    # -- articulations ------------------------------------------------------------------------------------

    def _grab_handle(self, pose: Pose) -> Generator[Segment, SceneState, SceneState]:
        """Come down on a handle bar from above to the TCP ``pose`` and close on it; returns the state after."""
        yield from self._travel(pose.moved((0, 0, APPROACH_HEIGHT)), HANDLE_OPENING, Motion.APPROACH, CLEAR_Z,
                                Motion.RETREAT)  # fmt: skip
        yield Segment(Motion.DESCEND, pose, HANDLE_OPENING, speed=CONTACT_SPEED, settle=0.004)
        state = yield Segment(Motion.GRASP, pose, 0.0, settle=None, hold=GRASP_STEPS)
        return state

    def _drawer(self, opening: bool, state: SceneState) -> Routine:
        """Grasp the drawer handle and pull it open (or push it closed) along the slide."""
        fixtures = self._fixtures
        lower, upper = state.articulations["drawer"].lower, state.articulations["drawer"].upper
        target = lower + (DRAWER_OPEN_TARGET if opening else CLOSED_TARGET) * (upper - lower)
        for _attempt in range(2):
            q = state.articulations["drawer"].joint_position
            grasp = fixtures.drawer_handle(q)
            yaw = nearest_equivalent_yaw(np.pi / 2, reference_yaw(grasp))  # fingers across the bar, along y
            state = yield from self._grab_handle(Pose(grasp, down_quaternion(yaw)))
            if HANDLE_GRIP[0] <= state.gripper_opening <= HANDLE_GRIP[1]:
                here = self._tracker.pose
                end = here.moved(fixtures.drawer_axis * (target - q) - (0.004 if not opening else 0.0)
                                 * fixtures.drawer_axis)  # fmt: skip
                reached = _opening_reached("drawer", opening, DRAWER_OPEN_TARGET if opening else CLOSED_TARGET)
                state = yield Segment(
                    Motion.PULL if opening else Motion.PUSH, end, 0.0,
                    speed=CONTACT_SPEED, profile=Profile.LINEAR, settle=None, until=reached, hold=10,
                )  # fmt: skip
            state = yield from self._collect(self._release_and_retreat(HANDLE_OPENING, np.array([0.0, 0.0, 0.1])))
            if _articulation_done(state, "drawer", opening):
                return
        raise ExpertGaveUpError(f"the drawer is {state.articulations['drawer'].opening:.2f} open after two tries")

    def _door(self, opening: bool, state: SceneState) -> Routine:
        """Open the door by its handle (:meth:`_swing_door`) or push it shut (:meth:`_push_door`)."""
        if opening:
            return (yield from self._swing_door(state))
        return (yield from self._push_door(state))

    def _push_door(self, state: SceneState) -> Routine:
        """Closed fingers against the door's outer face, above the handle, swept along the hinge arc to shut.

        The open door's handle faces away from the robot at the edge of its reach, so the door is pushed
        rather than held: the pusher point is DOOR_PUSH_RADIUS from the hinge, DOOR_PUSH_STANDOFF off the face.
        """
        fixtures = self._fixtures
        for _attempt in range(2):
            angle = state.articulations["cabinet"].joint_position
            local = np.array([fixtures.hinge[0] - DOOR_PUSH_STANDOFF, fixtures.hinge[1] + DOOR_PUSH_RADIUS,
                              DOOR_PUSH_HEIGHT])  # fmt: skip
            contact = rotate_about(local, fixtures.hinge, angle)
            sweep = -angle - DOOR_OVERDRIVE
            yaw = self._door_yaw(contact, angle, sweep, lean=0.0)
            pose = Pose(contact, down_quaternion(yaw))
            above = pose.moved((0.0, 0.0, DOOR_CLEAR_Z - contact[2]))
            yield from self._travel(above, 0.0, Motion.APPROACH, max(CLEAR_Z, DOOR_CLEAR_Z), Motion.RETREAT)
            yield Segment(Motion.DESCEND, pose, 0.0, speed=CONTACT_SPEED, settle=0.008)

            def arc(_start: Pose, s: float, sweep: float = sweep, yaw: float = yaw, contact: Vector = contact) -> Pose:
                return Pose(rotate_about(contact, fixtures.hinge, s * sweep), down_quaternion(yaw + s * sweep))

            radius = float(np.linalg.norm(contact[:2] - fixtures.hinge))
            state = yield Segment(
                Motion.PUSH, arc(pose, 1.0), 0.0, speed=CONTACT_SPEED, path=arc, length=radius * abs(sweep),
                profile=Profile.LINEAR, settle=None, until=_opening_reached("cabinet", False, CLOSED_TARGET), hold=6,
            )  # fmt: skip
            state = yield Segment(Motion.RETREAT, self._tracker.pose.moved((0.0, 0.0, 0.1)), 0.0, settle=None)
            if _articulation_done(state, "cabinet", False):
                return
        raise ExpertGaveUpError(
            f"the cabinet door is {state.articulations['cabinet'].opening:.2f} open after two pushes"
        )

    def _swing_door(self, state: SceneState) -> Routine:
        """Grasp the door handle from above and swing it open along the hinge arc, turning the hand with it."""
        opening = True
        fixtures = self._fixtures
        lower, upper = state.articulations["cabinet"].lower, state.articulations["cabinet"].upper
        fraction = DOOR_OPEN_TARGET if opening else CLOSED_TARGET
        target = lower + fraction * (upper - lower)
        for _attempt in range(2):
            angle = state.articulations["cabinet"].joint_position
            grasp = fixtures.door_handle(angle)
            sweep = (target - (0.0 if opening else 0.03)) - angle
            yaw = self._door_yaw(grasp, angle, sweep)
            state = yield from self._grab_handle(Pose(grasp, _door_quaternion(yaw, angle)))
            if HANDLE_GRIP[0] <= state.gripper_opening <= HANDLE_GRIP[1]:
                start = self._tracker.pose
                hinge = fixtures.hinge

                def arc(
                    _start: Pose, s: float, start: Pose = start, sweep: float = sweep, yaw: float = yaw,
                    angle: float = angle, hinge: Vector = hinge,
                ) -> Pose:  # fmt: skip
                    turn = s * sweep
                    quaternion = _door_quaternion(yaw + turn, angle + turn)
                    return Pose(rotate_about(start.position, hinge, turn), quaternion)

                radius = float(np.linalg.norm(start.position[:2] - hinge))
                goal = arc(start, 1.0)
                state = yield Segment(
                    Motion.PULL if opening else Motion.PUSH, goal, 0.0,
                    speed=CONTACT_SPEED, path=arc, length=radius * abs(sweep), profile=Profile.LINEAR,
                    settle=None, until=_opening_reached("cabinet", opening, fraction), hold=10,
                )  # fmt: skip
            state = yield from self._collect(self._leave_door())
            if _articulation_done(state, "cabinet", opening):
                return
        raise ExpertGaveUpError(
            f"the cabinet door is {state.articulations['cabinet'].opening:.2f} open after two tries"
        )

    def _leave_door(self) -> Routine:
        """Let go of the door handle and withdraw above the door's top edge, back over the counter, so that
        the next move cannot sweep the door shut."""
        here = self._tracker.pose
        yield Segment(Motion.RELEASE, here, HANDLE_OPENING, settle=None, hold=RELEASE_STEPS)
        up = here.moved((0.0, 0.0, DOOR_CLEAR_Z - here.position[2]))
        yield Segment(Motion.RETREAT, up, HANDLE_OPENING, settle=None)
        inside = np.array([DOOR_EXIT[0], DOOR_EXIT[1], DOOR_CLEAR_Z])
        yield Segment(Motion.RETREAT, Pose(inside, down_quaternion(reference_yaw(inside))), HANDLE_OPENING, settle=None)

    def _door_yaw(self, grasp: Vector, angle: float, sweep: float, lean: float = DOOR_LEAN) -> float:
        """Closing-axis yaw along the door (at ``grasp``, door ``angle`` rad) whose whole ``sweep`` rad the arm
        can follow, the tool leaning ``lean`` rad toward the door."""
        best: tuple[float, float] | None = None
        for candidate in (angle + np.pi / 2, angle - np.pi / 2):
            poses = [
                Pose(rotate_about(grasp, self._fixtures.hinge, f * sweep),
                     down_quaternion(candidate + f * sweep, lean, lean=angle + f * sweep))
                for f in np.linspace(0.0, 1.0, SWEEP_CHECKS)
            ]  # fmt: skip
            cost = self._sweep_cost(poses)
            if best is None or cost < best[0]:
                best = (cost, candidate)
        assert best is not None
        return best[1]

    def _sweep_cost(self, poses: Sequence[Pose]) -> float:
        """How hard following ``poses`` in order is: IK failures and joints near their limits along the way."""
        lower, upper = self._embodiment.position_limits
        q: Vector | None = None
        cost = 0.0
        for pose in poses:
            ok, q = self._tracker.reachable(pose, q)
            margin = float(np.min(np.minimum(q - lower, upper - q)))
            cost += (0.0 if ok else 10.0) + max(0.0, JOINT_MARGIN - margin)
        return cost


DOOR_PUSH_RADIUS = 0.2  # m, from the hinge along the door, where the fingers push it shut
DOOR_PUSH_STANDOFF = 0.028  # m, TCP off the door's hinge line on the outer side (fingers 1.1 cm thick)
DOOR_PUSH_HEIGHT = 0.235  # m, TCP height while pushing the door: above its handle, hand mount above its top
DOOR_CLEAR_Z = 0.34  # m, TCP height that clears the door's top edge (fingers included)
DOOR_EXIT = (0.32, -0.2)  # m, xy over the counter the hand withdraws to after opening the door
DOOR_OVERDRIVE = 0.06  # rad, how far past closed the push sweep is commanded
SWEEP_CHECKS = 6  # poses checked with IK along a door swing before choosing how to hold the handle
JOINT_MARGIN = 0.15  # rad, joints closer than this to a limit make a swing costlier


BASKET_SIDE_OFFSET = 0.03  # m, off the basket's handle line (its x axis) where objects are lowered
BASKET_FLOOR = 0.008  # m, basket floor above its bottom


def _carry_speed(name: str) -> float:
    """Peak tool speed (m/s) while carrying object ``name``: dishes hang off their rim and swing more."""
    return RIM_CARRY_SPEED if GRASPS[name].rim_segments else CARRY_SPEED


def _approach_axis(quaternion: Vector) -> Vector:
    """(3,) unit approach axis (tool z) of a tool orientation, base frame."""
    matrix = np.empty(9)
    mujoco.mju_quat2Mat(matrix, quaternion)
    return matrix.reshape(3, 3)[:, 2].copy()


def _with_until(segment: Segment, until: Callable[[SceneState], bool]) -> Segment:
    """``segment`` that also stops when ``until`` holds."""
    return Segment(
        segment.motion, segment.goal, segment.gripper, segment.speed, segment.path, segment.length,
        segment.profile, segment.settle, segment.hold, until,
    )  # fmt: skip


def _door_quaternion(yaw: float, door_angle: float) -> Vector:
    """Tool on the door handle: closing axis at ``yaw``, approach leaned DOOR_LEAN toward the door panel
    (the door's inward normal is at ``door_angle`` rad), so that the hand leans back from the door's top."""
    return down_quaternion(yaw, DOOR_LEAN, lean=door_angle)


def _dropped(name: str) -> Callable[[SceneState], bool]:
    """Predicate: object ``name`` left the hand (not between the fingers and away from the TCP)."""

    def dropped(state: SceneState) -> bool:
        if state.grasped == name:
            return False
        return bool(np.linalg.norm(state.objects[name].bounds.center - state.ee_position) > DROP_DISTANCE)

    return dropped


def _opening_reached(fixture: str, opening: bool, fraction: float) -> Callable[[SceneState], bool]:
    """Predicate: the fixture's opening has reached ``fraction`` (from below when opening, above when closing)."""
    if opening:
        return lambda state: state.articulations[fixture].opening >= fraction
    return lambda state: state.articulations[fixture].opening <= fraction


def _articulation_done(state: SceneState, fixture: str, opening: bool) -> bool:
    value = state.articulations[fixture].opening
    return value >= OPEN_ENOUGH if opening else value <= CLOSED_ENOUGH
