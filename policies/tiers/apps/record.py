"""Scripted-expert rollouts in the kitchen, turned into dataset frames with language labels.

One episode, timeline (dt = 1 / control rate)::

    t:        0        1        2      ...  T-1        T
    obs:      o_0      o_1      o_2         o_{T-1}    o_T (final: labels only, not a frame)
    expert:   a_0 ...                       a_{T-1}
    frame t = (o_t, a_t, subtask_t, expert primitive_t, language motion_t)

The language motion of frame t looks ahead over o_t..o_{t+window} (see :mod:`tiers.datasets.language_motion`),
so frames are buffered for the whole episode and labelled before they are handed to the recorder. The episode
ends when the task succeeds (the environment terminates), when it is truncated, or ``settle_steps`` after the
expert reports its plan done or given up. Frames after the plan is over keep the last subtask's text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.observation import Observation
from tiers.datasets.features import DatasetSpec
from tiers.datasets.language_motion import LabelerSettings, label_motions

if TYPE_CHECKING:
    from tiers.sim.kitchen.env import KitchenEnv

SETTLE_STEPS = 10  # control steps (0.5 s) recorded after the expert is done, as the evaluator waits before judging


@dataclass
class ExpertEpisode:
    """One expert rollout, ready to record.

    Attributes:
        frames: ``add_frame`` dicts, one per control step.
        success: the task's predicate held at the end.
        reason: why it failed ("" on success).
        expert_motions: per-frame primitive phases (``Motion`` values).
        language_motions: per-frame RT-H language motions.
        wall_time: s spent simulating and rendering.
    """

    frames: list[dict[str, Any]] = field(default_factory=list)
    success: bool = False
    reason: str = ""
    expert_motions: list[str] = field(default_factory=list)
    language_motions: list[str] = field(default_factory=list)
    wall_time: float = 0.0


def roll_out_expert(
    env: KitchenEnv,
    task_id: str,
    seed: int,
    spec: DatasetSpec,
    *,
    labeler: LabelerSettings | None = None,
    settle_steps: int = SETTLE_STEPS,
) -> ExpertEpisode:
    """Run the scripted expert on ``task_id`` from ``seed`` in ``env`` and return labelled frames.

    ``env`` must render the cameras of ``spec`` (``render=True``) when ``spec.cameras`` is not empty.
    """
    from tiers.sim.kitchen.expert import ScriptedExpert

    start = time.perf_counter()
    observation, _ = env.reset(seed=seed, options={"task": task_id})
    assert env.task is not None
    instruction = env.task.instruction
    expert = ScriptedExpert.from_kitchen(env.backend)  # type: ignore[arg-type]
    expert.reset(env.task.plan, env.scene_state(), observation)
    observations: list[Observation] = []
    actions: list[NDArray[np.float32]] = []
    subtasks: list[str] = []
    primitives: list[str] = []
    info: dict[str, Any] = {"success": False, "reason": "no step taken"}
    subtask = env.task.plan[0].text if env.task.plan else ""
    finished_at: int | None = None
    while True:
        step = expert.act(observation, env.scene_state())
        subtask = step.subtask.text if step.subtask is not None else subtask
        observations.append(observation)
        actions.append(step.action)
        subtasks.append(subtask)
        primitives.append(step.motion.value)
        observation, _, terminated, truncated, info = env.step(step.action)
        if step.done and finished_at is None:
            finished_at = len(actions)
        if terminated or truncated or (finished_at is not None and len(actions) - finished_at >= settle_steps):
            break
    poses = np.array([o.ee_pose for o in [*observations, observation]])  # (T+1, 7): the final one for look-ahead
    openings = np.array([o.gripper_opening for o in [*observations, observation]])  # (T+1,)
    motions = label_motions(poses, openings, dt=1.0 / spec.fps, settings=labeler)[:-1]
    frames = [
        spec.frame(o, a, task=instruction, subtask=s, language_motion=m, expert_motion=p)
        for o, a, s, m, p in zip(observations, actions, subtasks, motions, primitives, strict=True)
    ]
    success = bool(info["success"])
    reason = "" if success else str(info["reason"])
    failure = getattr(expert, "failure", None)
    if failure and not success:
        reason = f"{failure}; {reason}"
    return ExpertEpisode(
        frames=frames,
        success=success,
        reason=reason,
        expert_motions=primitives,
        language_motions=motions,
        wall_time=time.perf_counter() - start,
    )
