"""A learned low-tier policy as a ``tiers eval`` controller: ``--policy <checkpoint folder>``.

In control mode the controller is handed the plan (the gold plan, or the planner's in integrated mode)
and conditions the policy on one subtask text at a time, as the policy was trained on the per-frame
``subtask`` column (or on the instruction, for policies conditioned on ``task``). It moves to the next
subtask when that subtask's effect holds in the simulator (the benchmark's success detector, the same
predicate the task's success is made of), dropping the queued actions so the new text acts on the next
tick; it gives up a subtask after ``STEPS_PER_SUBTASK`` control steps. The checkpoint is checked
against the simulated robot when it is loaded (robot, action space and size, state size, rate, cameras).
The policy's sampler noise is seeded from the episode's seed (:mod:`tiers.apps.evaluation.seeding`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from tiers.apps.evaluation.report import EpisodeResult
from tiers.apps.evaluation.seeding import seed_tiers, state_digest
from tiers.commands.subtasks import Subtask
from tiers.core.observation import Observation
from tiers.policies.low.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_policy
from tiers.services.video import write_video
from tiers.sim.kitchen.env import STEPS_PER_SUBTASK, KitchenEnv
from tiers.sim.kitchen.tasks import Task, success_of

SETTLE_STEPS = 10  # control steps (0.5 s) the robot holds after the last subtask, before judging


def is_checkpoint(name: str) -> bool:
    """Whether a controller name is a low-tier checkpoint folder (holds config.json and model.safetensors)."""
    path = Path(name)
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


class LearnedController:
    """Runs a low-tier policy checkpoint through a plan of subtasks in a :class:`KitchenEnv`.

    Args:
        checkpoint: the policy's checkpoint folder.
        env: the environment it will act in; the checkpoint is checked against its robot at load.
        device: torch device; None: CUDA when available, else the CPU.

    Raises:
        EmbodimentMismatchError / ContractError: the checkpoint does not fit the env's robot.
    """

    def __init__(self, checkpoint: str | Path, env: KitchenEnv, *, device: str | None = None):
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.env = env
        action_dim = int(np.prod(env.action_space.shape or (0,)))
        self.policy: Any = load_policy(checkpoint, embodiment=env.embodiment, action_dim=action_dim, device=device)
        self.needs_images = bool(self.policy.features.cameras)
        self._joint_actions = action_dim == env.embodiment.dof + 1

    def run(
        self, task: Task, plan: Sequence[Subtask], *, seed: int, video_path: Path | None = None, start: float
    ) -> EpisodeResult:
        """One episode of ``task`` from the env's current reset state, executing ``plan``."""
        env, policy = self.env, self.policy
        language = policy.features.language_key
        seed_tiers(seed, low=policy)  # the sampler's noise follows the episode's seed, not the episodes before
        policy.reset()
        observation = self._observe(task)
        frames: list[NDArray[np.uint8]] = []
        info: dict[str, Any] = {"success": False, "reason": "no step taken"}
        index, in_subtask, steps, done_at = 0, 0, 0, None
        hold: NDArray[np.float32] | None = None
        failure = ""
        with torch.inference_mode():
            while True:
                if video_path is not None:
                    images = observation.images or env.backend.observe(render=True).images
                    frames.append(images["front"])
                if index < len(plan):
                    text = plan[index].text if language != "task" else task.instruction
                    action = policy.action_for_env(
                        policy.select_action(policy.batch_from_observation(observation, command=text))
                    )
                    hold = action
                else:  # every subtask reached: keep still while the scene settles
                    assert hold is not None
                    action = self._hold(hold)
                _, _, terminated, truncated, info = env.step(action)
                observation = self._observe(task)
                steps += 1
                in_subtask += 1
                if index < len(plan):
                    if success_of([plan[index]])(env.initial_state, env.scene_state()):
                        index, in_subtask = index + 1, 0
                        policy.drop_queued_actions()  # the next subtask's text acts on the next tick
                        if index == len(plan):
                            done_at = steps
                    elif in_subtask >= STEPS_PER_SUBTASK:
                        failure = f"subtask {plan[index].text!r} not reached in {STEPS_PER_SUBTASK} steps"
                        break
                if terminated or truncated or (done_at is not None and steps - done_at >= SETTLE_STEPS):
                    break
        success = bool(info["success"])
        reason = "" if success else "; ".join(part for part in (failure, str(info["reason"])) if part)
        extra: dict[str, object] = {
            "subtasks": len(plan),
            "subtasks_done": index,
            "state_digest": state_digest(observation.joint_positions, observation.ee_pose),
        }
        if video_path is not None and frames:
            extra["video"] = str(write_video(video_path, frames, fps=env.embodiment.control_rate_hz))
        return EpisodeResult.of_task(
            task,
            seed=seed,
            success=success,
            reason=reason,
            steps=steps,
            sim_time=env.backend.time,
            wall_time=time.perf_counter() - start,
            extra=extra,
        )

    def _observe(self, task: Task) -> Observation:
        """The current observation, with camera images when the policy reads them."""
        return replace(self.env.backend.observe(render=self.needs_images), instruction=task.instruction)

    def _hold(self, last: NDArray[np.float32]) -> NDArray[np.float32]:
        """An action that keeps the robot where the last action sent it."""
        if self._joint_actions:
            return last
        held = np.zeros_like(last)  # end-effector deltas: no motion, same gripper target
        held[-1] = last[-1]
        return held
