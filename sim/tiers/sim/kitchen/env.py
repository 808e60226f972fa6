"""KitchenEnv: one benchmark task as a Gymnasium environment (``tiers.sim.make``).

An episode: ``reset(seed=s)`` picks the task (the one given, or one of several drawn with ``s``), samples
a layout that meets the task's initial requirements from ``s`` (resampled, deterministically, while it
already satisfies the task or leaves no counter room for one of its spatial placements: see
:func:`~tiers.sim.kitchen.placement.spatial_room`), and returns the core ``Observation``;
``step(action)`` applies one action for one control period. The episode terminates on success (reward 1)
and is truncated after ``max_steps``. Same seed and actions -> same trajectory.

Action rule (documented, never a crash):
    - non-finite actions (NaN/inf) are REJECTED: the robot holds its previous targets for that step and
      ``info["rejected_actions"]`` counts it;
    - finite values outside the action space are CLIPPED to it and ``info["clipped_components"]`` counts
      the components changed (joint limits and gripper range for joint actions; the per-step delta bounds
      for end-effector actions);
    - a wrong shape is a caller bug and raises ``ContractError`` naming the expected shape.
A simulation that diverges (MuJoCo's NaN/Inf acceleration warning) truncates the episode with the reason
in ``info["reason"]``; it never crashes the caller.

Action spaces (from the EmbodimentSpec, or overridden with ``action_space=``):
    joint_position: (J+1,) joint position targets in rad, then the gripper opening target in m;
    ee_delta: (7,) TCP translation (m) and rotation vector (rad) in the base frame for this step, then
        the gripper opening target in m. Deltas move the commanded TCP pose (not the measured one, which
        lags the servos), so ten steps of +1 cm command +10 cm; damped-least-squares IK turns the commanded
        pose into joint targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from tiers.core.embodiment import ActionSpace, EmbodimentSpec
from tiers.core.errors import ContractError, SimulationError
from tiers.core.observation import Observation
from tiers.services.kinematics import ArmKinematics
from tiers.sim.backend import SimBackend
from tiers.sim.backends import DEFAULT_BACKEND, make_backend
from tiers.sim.kitchen.layout import ARTICULATIONS, KitchenLayout, sample_layout
from tiers.sim.kitchen.placement import spatial_room
from tiers.sim.kitchen.tasks import Task, all_tasks, get_task
from tiers.sim.scene_state import SceneState

MAX_EE_TRANSLATION = 0.05  # m per step (1 m/s at 20 Hz): bound of the ee_delta translation
MAX_EE_ROTATION = 0.25  # rad per step: bound of each ee_delta rotation-vector component
STEPS_PER_SUBTASK = 300  # control steps (15 s at 20 Hz) granted per gold-plan subtask before truncation
LAYOUT_ATTEMPTS = 20  # resamples of a layout that already satisfies the task or has no room for it


def layout_for_task(task: Task, seed: int, *, attempt: int = 0) -> KitchenLayout:
    """Sample a layout meeting ``task``'s requirements: its objects present, its fixtures opened as
    required, objects the instruction names by colour painted in that colour.

    ``attempt`` > 0 derives a different, still deterministic, layout from the same seed.
    """
    requirements = task.requirements
    limits = {name: (lower, upper) for name, (_, lower, upper) in ARTICULATIONS.items()}
    layout_seed = int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])
    layout = sample_layout(
        layout_seed,
        objects=list(requirements.objects),
        articulations=requirements.articulation_values(limits),
    )
    return replace(painted_for_task(layout, task), seed=seed)


def painted_for_task(layout: KitchenLayout, task: Task) -> KitchenLayout:
    """``layout`` with the objects ``task``'s instruction names by colour painted in that colour."""
    colors = task.requirements.colors
    placements = {
        name: replace(placement, color=colors.get(name, placement.color)) for name, placement in layout.objects.items()
    }
    return replace(layout, objects=placements)


class KitchenEnv(gym.Env[Observation, NDArray[np.float32]]):
    """A kitchen task in a simulator backend, as a Gymnasium environment.

    ``reset`` and ``step`` return the core :class:`~tiers.core.observation.Observation` (not a dict):
    ``observation_space`` describes its arrays for reference. ``info`` holds ``task_id``, ``instruction``,
    ``success``, ``reason``, ``clipped_components`` and ``rejected_actions``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}  # noqa: RUF012 (gymnasium declares it so)

    def __init__(
        self,
        task: str | Task | Sequence[str | Task] | None = None,
        *,
        backend: SimBackend | str | None = None,
        robot: str | EmbodimentSpec = "panda",
        action_space: ActionSpace | str | None = None,
        render: bool = True,
        render_mode: str | None = None,
        max_steps: int | None = None,
    ):
        """
        Args:
            task: a task (or its id), several to draw from at each reset, or None for every task.
            backend: the simulator, or the name of one in :data:`tiers.sim.backends.BACKENDS` to build for
                ``robot``; None: the default (MuJoCo).
            robot: robot preset name or spec (used when ``backend`` is None).
            action_space: override of the embodiment's action space ("joint_position" or "ee_delta").
            render: render camera images into every observation (off: proprioception only, much faster).
            render_mode: "rgb_array" to let :meth:`render` return the front camera image.
            max_steps: truncation limit; None: ``STEPS_PER_SUBTASK`` per gold-plan subtask.
        """
        if backend is None or isinstance(backend, str):
            backend = make_backend(backend or DEFAULT_BACKEND, robot)
        self.backend = backend
        self.embodiment: EmbodimentSpec = backend.embodiment
        self._tasks = self._resolve_tasks(task)
        self._action_kind = ActionSpace(action_space or self.embodiment.action_space)
        self._render_images = render
        self.render_mode = render_mode
        self._max_steps = max_steps
        self._kinematics: ArmKinematics | None = None
        self._action_bounds = self._bounds()  # (lower, upper) of the action space, float64
        self.action_space = self._make_action_space()  # type: ignore[assignment]
        self.observation_space = self._make_observation_space()  # type: ignore[assignment]
        self.metadata = {**self.metadata, "render_fps": self.embodiment.control_rate_hz}
        self.task: Task | None = None
        self._initial: SceneState | None = None
        self._state: SceneState | None = None  # state after the last reset/step, None when stale
        self._observation: Observation | None = None
        self._target: NDArray[np.float64] | None = None  # (J+1,) joint targets + gripper held by the robot
        self._ee_target: NDArray[np.float64] | None = None  # (7,) commanded TCP pose for ee_delta actions
        self._steps = 0
        self._clipped = 0
        self._rejected = 0

    # -- Gymnasium API ---------------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Observation, dict[str, Any]]:
        """Start an episode. ``options={"task": id}`` picks the task; ``seed`` fixes task draw and layout.

        ``options={"layout": KitchenLayout}`` starts from that layout instead of one sampled for the task (the
        test-time-shift scenes); a layout that does not pose the task raises :class:`ContractError`.
        """
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(2**31)) if seed is None else seed
        options = options or {}
        if "task" in options:
            self.task = options["task"] if isinstance(options["task"], Task) else get_task(str(options["task"]))
        else:
            self.task = self._tasks[int(self.np_random.integers(len(self._tasks)))]
        given: KitchenLayout | None = options.get("layout")
        refusals: list[str] = []
        for attempt in range(1 if given is not None else LAYOUT_ATTEMPTS):
            layout = given if given is not None else layout_for_task(self.task, episode_seed, attempt=attempt)
            observation = self.backend.reset(layout, render=False)
            self._initial = self._state = self.backend.scene_state()
            # a layout must pose the task: not solved already, and with counter room for its spatial placements
            if self.task.check(self._initial, self._initial):
                refusals.append("already satisfied")
            elif (no_room := spatial_room(self.task.plan, self._initial)) is not None:
                refusals.append(no_room)
            else:
                break
        else:
            if given is not None:
                raise ContractError(f"task {self.task.id!r}: the given layout does not pose it ({refusals[0]})")
            raise ContractError(
                f"task {self.task.id!r}: no layout of seed {episode_seed} poses it in {LAYOUT_ATTEMPTS} attempts "
                f"({'; '.join(sorted(set(refusals)))})"
            )
        if self._render_images:
            observation = self.backend.observe(render=True)
        observation = observation.with_instruction(self.task.instruction)
        self._observation = observation
        self._target = np.append(observation.joint_positions, observation.gripper_opening)
        self._ee_target = observation.ee_pose.copy()
        self._steps = self._clipped = self._rejected = 0
        return observation, self._info(success=False, reason="episode started")

    def step(self, action: NDArray[np.floating[Any]]) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        """Apply one action for one control period (see the module docstring for the action rule)."""
        if self.task is None or self._observation is None or self._target is None:
            raise ContractError("call reset() before step()")
        values: NDArray[np.float64] = np.asarray(action, dtype=np.float64)
        if values.shape != self.action_space.shape:
            raise ContractError(
                f"action must have shape {self.action_space.shape} ({self._action_kind.value}), got {values.shape}"
            )
        if np.all(np.isfinite(values)):
            self._target = self._joint_target(values)
        else:
            self._rejected += 1  # hold the previous targets: a NaN never reaches the actuators
        try:
            observation = self.backend.step(self._target, render=self._render_images)
        except SimulationError as error:  # a diverged simulation ends the episode, it does not crash the run
            self._state = None  # MuJoCo reset its state: what was cached is stale
            self._steps += 1
            return self._observation, 0.0, False, True, self._info(success=False, reason=str(error))
        self._observation = observation.with_instruction(self.task.instruction)
        self._steps += 1
        assert self._initial is not None
        self._state = self.backend.scene_state()
        verdict = self.task.check(self._initial, self._state)
        truncated = not verdict.success and self._steps >= self.max_steps
        info = self._info(success=verdict.success, reason=verdict.reason)
        return self._observation, float(verdict.success), verdict.success, truncated, info

    def render(self) -> NDArray[np.uint8] | None:
        """The front camera image of the last observation (``render_mode="rgb_array"``)."""
        if self.render_mode != "rgb_array" or self._observation is None:
            return None
        images = self._observation.images or self.backend.observe(render=True).images
        return images.get("front", next(iter(images.values()), None))

    def close(self) -> None:
        self.backend.close()

    # -- episode facts ----------------------------------------------------------------------------------

    @property
    def max_steps(self) -> int:
        if self._max_steps is not None:
            return self._max_steps
        return STEPS_PER_SUBTASK * len(self.task.plan) if self.task else STEPS_PER_SUBTASK

    @property
    def initial_state(self) -> SceneState:
        """Privileged state at the start of the episode."""
        if self._initial is None:
            raise ContractError("call reset() first")
        return self._initial

    def scene_state(self) -> SceneState:
        """Privileged state now (for experts, correctors and predicates; never for policies).

        The state the last ``reset``/``step`` computed for its success check is reused, so a caller reading
        it once per step does not pay for it twice; stepping the backend directly bypasses this cache.
        """
        if self._state is None:
            self._state = self.backend.scene_state()
        return self._state

    # -- helpers ------------------------------------------------------------------------------------------

    def _info(self, *, success: bool, reason: str) -> dict[str, Any]:
        assert self.task is not None
        return {
            "task_id": self.task.id,
            "instruction": self.task.instruction,
            "success": success,
            "reason": reason,
            "steps": self._steps,
            "clipped_components": self._clipped,
            "rejected_actions": self._rejected,
        }

    @staticmethod
    def _resolve_tasks(task: str | Task | Sequence[str | Task] | None) -> list[Task]:
        if task is None:
            return list(all_tasks())
        items = [task] if isinstance(task, str | Task) else list(task)
        if not items:
            raise ContractError("no tasks given")
        return [item if isinstance(item, Task) else get_task(item) for item in items]

    def _bounds(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        spec = self.embodiment
        if self._action_kind is ActionSpace.JOINT_POSITION:
            lower, upper = spec.position_limits
            return np.append(lower, 0.0), np.append(upper, spec.gripper.max_opening)
        step = [MAX_EE_TRANSLATION] * 3 + [MAX_EE_ROTATION] * 3
        return np.array([-s for s in step] + [0.0]), np.array([*step, spec.gripper.max_opening])

    def _make_action_space(self) -> gym.spaces.Box:
        lower, upper = self._bounds()
        return gym.spaces.Box(lower.astype(np.float32), upper.astype(np.float32), dtype=np.float32)

    def _make_observation_space(self) -> gym.spaces.Dict:
        spec = self.embodiment
        lower, upper = spec.position_limits
        spaces: dict[str, gym.spaces.Space[Any]] = {
            "state": gym.spaces.Box(
                np.append(lower, 0.0).astype(np.float32), np.append(upper, spec.gripper.max_opening).astype(np.float32)
            ),
            "ee_pose": gym.spaces.Box(-np.inf, np.inf, shape=(7,), dtype=np.float64),
        }
        for camera in spec.cameras:
            spaces[f"images.{camera.name}"] = gym.spaces.Box(0, 255, (camera.height, camera.width, 3), np.uint8)
        return gym.spaces.Dict(spaces)

    def _joint_target(self, action: NDArray[np.float64]) -> NDArray[np.float64]:
        lower, upper = self._action_bounds
        clipped = np.clip(action, lower, upper)
        self._clipped += int(np.count_nonzero(clipped != action))
        if self._action_kind is ActionSpace.JOINT_POSITION:
            return clipped
        return np.append(self._ik_target(clipped[:6]), clipped[6])

    def _ik_target(self, delta: NDArray[np.float64]) -> NDArray[np.float64]:
        """Joint targets (J,) rad putting the TCP at its current pose moved by ``delta`` (translation m,
        rotation vector rad, both in the base frame)."""
        assert self._ee_target is not None and self._target is not None
        if self._kinematics is None:
            model = getattr(self.backend, "model", None)
            if model is None:
                raise ContractError("ee_delta actions need a backend exposing a MuJoCo model of the robot")
            self._kinematics = ArmKinematics(
                model, joint_names=self.embodiment.joint_names, site_name=self.embodiment.ee_frame
            )
        position = self._ee_target[:3] + delta[:3]
        commanded = Rotation.from_quat(np.roll(self._ee_target[3:], -1))  # scipy uses xyzw
        quaternion = np.roll((Rotation.from_rotvec(delta[3:]) * commanded).as_quat(), 1)
        result = self._kinematics.solve(position, quaternion, q_init=self._target[:-1], max_iterations=50)
        # keep the pose actually reachable, so unreachable commands do not wind up
        reached_position, reached_quaternion = self._kinematics.forward(result.qpos)
        self._ee_target = np.concatenate([reached_position, reached_quaternion])
        joints: NDArray[np.float64] = result.qpos
        return joints
