"""KeypointPathPlanner: the GeneralVLA-style mid tier, a :class:`~tiers.core.protocols.MidLevelPlanner`.

    observation (RGB-D, cameras, joints) + subtask command
        -> PointCloudBuilder   segmented cloud in the base frame (simulator masks, or plane removal + DBSCAN)
        -> SceneMemory         what the subtask needs and the arm now hides, from an earlier view (with its age)
        -> AffordanceDetector  keypoint for the subtask (grasp / handle / push / place)
        -> PathPlanner         collision-aware timed EEPath (straight segments, RRT-Connect detours)
        -> MidLevelPlan(command, path, guidance=(path tracking, [staged VLS rewards]))

A pick whose object is already between the fingers (a correction came between the grasp and the lift) is
planned as the lift alone, straight up: the object in the hand hides it, so it could not be grasped again.

The staged VLS rewards (``vls_weight > 0``) come from templates (``reward_source="templates"``, the default) or
from a reward program a language model writes and the shared sandbox runs (``"llm"``,
:mod:`~tiers.policies.mid.llm_rewards`; the templates stand in when the model's program fails, and
:attr:`PlanOutcome.rewards_reason` says why).

The plan's path serves the low tier three ways: as a conditioning input, as the path-tracking guidance term
in ``guidance`` (for a frozen diffusion/flow policy), or executed directly by
:class:`~tiers.policies.mid.execution.PathFollower` through IK. When no path exists the plan has
``path=None`` and no guidance, and :meth:`KeypointPathPlanner.plan_detailed` says why; a plan that used a
remembered estimate says so in :attr:`PlanOutcome.memory` ("the drawer's handle from memory, 5.2 s old"). The
memory (:mod:`~tiers.policies.mid.scene_memory`) is one episode long (:meth:`KeypointPathPlanner.reset`) and
only fills gaps: a plan whose subtask's things are all in view is the plan without it. The timings in
:class:`PlanOutcome` are wall clock, for reports; nothing planned depends on them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import mujoco
import numpy as np
from numpy.typing import NDArray

from tiers.commands.subtasks import Action, Subtask, SubtaskError
from tiers.core.config import Config
from tiers.core.ee_path import EEPath
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.features import CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.core.protocols import MidLevelPlan
from tiers.policies.mid.affordances import Affordance, AffordanceConfig, AffordanceDetector, FixtureMap
from tiers.policies.mid.cluster_naming import ClusterNamer, ClusterNamingConfig, segment_without_masks
from tiers.policies.mid.kinematics import ArmFK
from tiers.policies.mid.language_rewards import subtask_rewards
from tiers.policies.mid.llm_rewards import LLMRewardConfig, LLMRewardWriter
from tiers.policies.mid.paths import PathConfig, PathPlanner, PathResult, Reachability
from tiers.policies.mid.perception import PerceptionConfig, PointCloudBuilder, SceneCloud, SegmentationSource
from tiers.policies.mid.reward_spec import RewardSource
from tiers.policies.mid.rewards import follow_path
from tiers.policies.mid.scene_memory import SceneMemory, SceneMemoryConfig
from tiers.policies.mid.steering import StagedGuidance
from tiers.services.chat import ChatBackend, make_backend
from tiers.services.kinematics import ArmKinematics


class KitchenScene(Protocol):
    """What :meth:`KeypointPathPlanner.for_kitchen` reads of a simulated kitchen (``tiers.sim``'s
    ``MujocoKitchen``): the compiled scene, fixtures and robot included, and the robot's embodiment."""

    @property
    def model(self) -> mujoco.MjModel: ...

    @property
    def embodiment(self) -> EmbodimentSpec: ...


@dataclass
class MidPlannerConfig(Config):
    """Settings of every stage of the keypoint path planner."""

    perception: PerceptionConfig = field(default_factory=PerceptionConfig)
    affordances: AffordanceConfig = field(default_factory=AffordanceConfig)
    paths: PathConfig = field(default_factory=PathConfig)
    held_distance: float = 0.09  # m, an object whose points come this close to the TCP with the fingers shut is held
    # m, a pick whose object is this close to the TCP with the fingers closed on something (not shut, not open)
    # is already grasped (a nudge or a stop came between the grasp and the lift): its path only lifts
    in_hand_distance: float = 0.06
    empty_grip: float = 0.004  # m, fingers at or below this opening closed on nothing
    tracking_weight: float = 100.0  # weight of the path-tracking guidance term handed to the low tier
    vls_weight: float = 0.0  # weight of the staged VLS rewards added to the guidance (0: tracking only)
    # who writes those rewards: "templates" (offline) or "llm" (a model's program in the sandbox; needs vls_weight)
    reward_source: RewardSource = RewardSource.TEMPLATES
    llm_rewards: LLMRewardConfig = field(default_factory=LLMRewardConfig)  # endpoint, repairs, sandbox of "llm"
    check_ik: bool = True  # check the keypoint poses with inverse kinematics (when a kinematics model is given)
    memory: SceneMemoryConfig = field(default_factory=SceneMemoryConfig)  # recall what the arm hides (max_age s)
    # without masks (perception.use_masks false, or no masks in the observation): clusters named by class
    naming: ClusterNamingConfig = field(default_factory=ClusterNamingConfig)

    def __post_init__(self) -> None:
        if self.reward_source is RewardSource.LLM and self.vls_weight <= 0:
            raise ValueError(
                f"reward_source 'llm' needs vls_weight > 0 (the staged rewards are not used at vls_weight "
                f"{self.vls_weight})"
            )


@dataclass(frozen=True)
class PlanOutcome:
    """A plan with everything that led to it.

    Attributes:
        plan: what the low tier receives (``path`` None when planning failed).
        reason: why there is no path ("" on success).
        cloud: the segmented scene, None if the command needed none.
        affordance: the keypoint used, None if none was found.
        path_result: the path planner's result, None if it was not reached.
        perception_time: s building the cloud and finding the affordance.
        planning_time: s planning the path.
        rewards_reason: why the staged VLS rewards are the templates' although ``reward_source`` is "llm" ("" when
            the model's program gave them, or when it was not asked).
        memory: what the plan took from the scene memory, one note per thing ("the drawer's handle from
            memory, 5.2 s old"), and the missing things it could not recall and why ("... not recalled: last
            seen 41.0 s ago, memory keeps 30 s"); empty when the view had everything.
    """

    plan: MidLevelPlan
    reason: str = ""
    cloud: SceneCloud | None = None
    affordance: Affordance | None = None
    path_result: PathResult | None = None
    perception_time: float = 0.0
    planning_time: float = 0.0
    rewards_reason: str = ""
    memory: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.plan.path is not None


class KeypointPathPlanner:
    """Subtask commands -> timed, collision-aware end-effector paths from RGB-D (see the module docstring)."""

    def __init__(
        self,
        *,
        embodiment: EmbodimentSpec,
        fixtures: FixtureMap,
        arm_fk: ArmFK,
        config: MidPlannerConfig | None = None,
        reachable: Reachability | None = None,
        reward_backend: ChatBackend | None = None,
    ):
        """
        Args:
            embodiment: the robot (speed cap, control period, gripper).
            fixtures: static map of the kitchen's fixtures.
            arm_fk: torch forward kinematics of the arm (robot self-filtering, guidance terms).
            config: settings.
            reachable: IK check of keypoint poses, None to check the workspace only.
            reward_backend: the chat model that writes reward programs (``reward_source="llm"``); None: the one
                ``config.llm_rewards`` or the environment names (TIERS_LLM_BASE_URL / _MODEL / _MODEL_PATH).
        """
        self.config = config or MidPlannerConfig()
        self.embodiment = embodiment
        self.fk = arm_fk
        self.builder = PointCloudBuilder(self.config.perception, arm_fk=arm_fk.double())
        self.detector = AffordanceDetector(fixtures, self.config.affordances)
        self.paths = PathPlanner(
            self.config.paths,
            max_ee_speed=embodiment.max_ee_speed,
            reachable=reachable if self.config.check_ik else None,
        )
        self.reward_writer: LLMRewardWriter | None = None
        if self.config.reward_source is RewardSource.LLM:
            if reward_backend is None:
                llm = self.config.llm_rewards  # built now, so a missing endpoint fails at construction
                reward_backend = make_backend(base_url=llm.base_url, model=llm.model, model_path=llm.model_path)
            self.reward_writer = LLMRewardWriter(reward_backend, self.config.llm_rewards)
        self.memory = SceneMemory(self.config.memory, max_opening=embodiment.gripper.max_opening)
        self.namer = ClusterNamer(self.config.naming, max_opening=embodiment.gripper.max_opening)
        self.last: PlanOutcome | None = None

    @classmethod
    def for_kitchen(
        cls, kitchen: KitchenScene, config: MidPlannerConfig | None = None, **kwargs: Any
    ) -> KeypointPathPlanner:
        """A planner for a simulated kitchen (a ``MujocoKitchen``): its scene model's FK, fixtures and IK;
        ``kwargs`` go to the constructor (``reward_backend``)."""
        spec = kitchen.embodiment
        fk = ArmFK.from_model(kitchen.model, joint_names=spec.joint_names, site_name=spec.ee_frame)
        kinematics = ArmKinematics(kitchen.model, joint_names=spec.joint_names, site_name=spec.ee_frame)
        home = np.asarray(spec.home, dtype=np.float64)

        def reachable(position: NDArray[np.float64], quaternion: NDArray[np.float64]) -> bool:
            return bool(kinematics.solve(position, quaternion, q_init=home, q_rest=home, max_iterations=150).success)

        return cls(
            embodiment=spec, fixtures=FixtureMap.from_model(kitchen.model), arm_fk=fk, config=config,
            reachable=reachable, **kwargs,
        )  # fmt: skip

    def reset(self) -> None:
        """A new episode: forget the last outcome and the scene memory."""
        self.last = None
        self.memory.reset()
        self.namer.reset()

    def seed(self, seed: int) -> None:
        """Seed every random draw of the coming plans with an episode's seed: the support plane's RANSAC
        (clustering, without masks) and RRT-Connect's samples. Each plan draws afresh from it, so a plan is a
        function of its observation, its command and this seed."""
        self.builder.seed(seed)
        self.paths.seed(seed)

    def plan(self, observation: Observation, command: LanguageCommand) -> MidLevelPlan:
        """MidLevelPlanner: a path and its tracking guidance for ``command`` (path None when there is none)."""
        return self.plan_detailed(observation, command).plan

    def plan_detailed(self, observation: Observation, command: LanguageCommand) -> PlanOutcome:
        """:meth:`plan` with the cloud, affordance, timings and the reason when no path exists."""
        outcome = self._plan(observation, command)
        self.last = outcome
        return outcome

    def _plan(self, observation: Observation, command: LanguageCommand) -> PlanOutcome:
        empty = MidLevelPlan(command)
        if command.style is not CommandStyle.SUBTASK:
            return PlanOutcome(empty, f"{command.style.value} commands go to the low tier, not to a path planner")
        try:
            subtask = Subtask.parse(command.text)
        except SubtaskError as error:
            return PlanOutcome(empty, str(error))
        started = time.perf_counter()
        cloud = self.builder.build(observation)
        if len(cloud) == 0:
            return PlanOutcome(empty, "no depth returns in any camera: the point cloud is empty", cloud)
        if cloud.source is not SegmentationSource.MASKS:  # no masks: clusters, named by class (cluster_naming)
            cloud = segment_without_masks(self.builder, cloud, observation, self.namer)
        in_hand = {name for name in set(cloud.names.values()) if self._held(name, cloud, observation)}
        if subtask.action is Action.PICK and (
            lift := self._lift_if_grasped(command, subtask.object, cloud, observation)
        ):
            self.memory.update(cloud, observation, self.detector, held=in_hand | {subtask.object})
            return PlanOutcome(lift, "", cloud)
        self.memory.update(cloud, observation, self.detector, held=in_hand)
        # a held object comes from the view only: memory fills what the subtask goes to
        needed = [subtask.target] if subtask.action is Action.PLACE else [subtask.object]
        recall = self.memory.fill(cloud, observation, self.detector, [name for name in needed if name])
        cloud, memory = recall.cloud, recall.used + recall.refused
        held = None
        if subtask.action is Action.PLACE:
            held = self._held(subtask.object, cloud, observation)
            if held is None:
                reason = f"the {subtask.object} is not in the hand: pick it up first"
                return PlanOutcome(empty, reason, cloud, memory=memory)
        held_radius = self._radius(cloud, held) if held else 0.04
        found = self.detector.detect(subtask, cloud, held_radius=held_radius)
        perceived = time.perf_counter()
        if found.affordance is None:
            reason = "; ".join((found.reason, *recall.refused))  # why memory could not stand in, too
            return PlanOutcome(empty, reason, cloud, perception_time=perceived - started, memory=memory)
        result = self.paths.plan(
            found.affordance, cloud, observation.ee_pose, gripper=observation.gripper_opening, held=held
        )
        timing = (perceived - started, time.perf_counter() - perceived)  # perception_time, planning_time
        if result.path is None:
            return PlanOutcome(empty, result.reason, cloud, found.affordance, result, *timing, memory=memory)
        if subtask.action is Action.PICK and cloud.source is not SegmentationSource.MASKS:
            self._attach(subtask.object, cloud, result.path)
        guidance = [self._tracking(result.path, observation)]
        rewards_reason = ""
        if self.config.vls_weight > 0:
            staged, rewards_reason = self._staged_rewards(command.text, found.affordance, cloud)
            guidance.append(staged.guidance(self.config.vls_weight))
        plan = MidLevelPlan(command, result.path, tuple(guidance))
        return PlanOutcome(plan, "", cloud, found.affordance, result, *timing, rewards_reason, memory)

    def _attach(self, name: str, cloud: SceneCloud, path: EEPath) -> None:
        """Without masks: fix ``name``'s points to the pick's grasp pose (the first waypoint whose gripper target
        closes), so the namer keeps the object in the cloud while the hand holds it (the self-filter removes it)."""
        closing = np.flatnonzero(np.diff(path.gripper) < -1e-4)
        if len(closing) == 0:
            return
        ids = [index for index, value in cloud.names.items() if value == name]
        mask = np.isin(cloud.labels, ids)
        self.namer.attach(name, cloud.points[mask], cloud.colors[mask], path.waypoints[closing[0] + 1])

    def _tracking(self, path: EEPath, observation: Observation) -> Any:
        """The path-tracking guidance term of ``path`` starting now."""
        return follow_path(
            self.fk, path, start_time=observation.timestamp, dt=self.embodiment.control_period,
            weight=self.config.tracking_weight,
        )  # fmt: skip

    def _lift_if_grasped(
        self, command: LanguageCommand, name: str, cloud: SceneCloud, observation: Observation
    ) -> MidLevelPlan | None:
        """A plan that only lifts ``name`` when it is already between the fingers, else None.

        Grasped: the fingers closed on something (more than ``empty_grip``, less than wide open) and the
        object's points, seen now or last seen (the hand may hide it: then scene memory has its estimate from
        before the grasp), within ``in_hand_distance`` of the TCP. The path rises ``paths.lift_height`` straight
        up at contact speed, the orientation held and the fingers squeezing.
        """
        opening = float(observation.gripper_opening)
        if not self.config.empty_grip < opening < self.embodiment.gripper.max_opening - 0.004:
            return None
        points = cloud.segment(name)
        if len(points) < self.detector.config.min_points:
            remembered = self.memory.things.get(name)
            if remembered is None or remembered.fixture:
                return None
            points = remembered.points
        tcp = np.asarray(observation.ee_pose, dtype=np.float64)
        if float(np.min(np.linalg.norm(points - tcp[:3], axis=1))) >= self.config.in_hand_distance:
            return None
        paths = self.paths.config
        fractions = np.linspace(0.0, 1.0, 5)
        waypoints = np.repeat(tcp[None], len(fractions), axis=0)
        waypoints[:, 2] += fractions * paths.lift_height
        times = np.asarray(fractions * paths.lift_height / paths.contact_speed, dtype=np.float64)
        path = EEPath(waypoints, times, np.zeros(len(fractions)))
        return MidLevelPlan(command, path, (self._tracking(path, observation),))

    def _staged_rewards(self, subtask: str, affordance: Affordance, cloud: SceneCloud) -> tuple[StagedGuidance, str]:
        """The subtask's staged rewards from the configured source, and why the LLM's are not used ("")."""
        max_opening = self.embodiment.gripper.max_opening
        if self.reward_writer is None:
            return subtask_rewards(affordance, self.fk, cloud=cloud, max_opening=max_opening), ""
        written = self.reward_writer.write(subtask, affordance, self.fk, cloud=cloud, max_opening=max_opening)
        assert written.staged is not None  # fallback on: the templates stand in for a failed program
        return written.staged, written.reason

    def _held(self, name: str, cloud: SceneCloud, observation: Observation) -> str | None:
        """``name`` if its points are at the TCP and the fingers are not wide open, else None."""
        points = cloud.segment(name)
        if len(points) == 0 or observation.gripper_opening > self.embodiment.gripper.max_opening - 0.004:
            return None
        nearest = float(np.min(np.linalg.norm(points - observation.ee_pose[:3], axis=1)))
        return name if nearest < self.config.held_distance else None

    @staticmethod
    def _radius(cloud: SceneCloud, name: str) -> float:
        points = cloud.segment(name)
        if len(points) == 0:
            return 0.04
        return 0.5 * float(np.linalg.norm(points[:, :2].max(axis=0) - points[:, :2].min(axis=0)))
