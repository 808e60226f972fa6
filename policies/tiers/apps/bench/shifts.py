"""Test-time shifts with a frozen learned low tier: unsteered vs path-tracking guidance vs VLS rewards.

Each scene is a pick-and-place task of the kitchen (:data:`SHIFT_PAIRS`, objects the shipped policy was
trained on) on a test-time-shift layout of :mod:`tiers.sim.kitchen.shifts`. The whole gold plan (pick, then
place) runs through a hierarchy (default ``learned_paths``: keypoint paths from RGB-D -> the frozen
path-conditioned BESO) in three arms that differ only in the guidance the mid tier hands to the sampler::

    unsteered      tracking_weight 0, vls_weight 0   the path is a conditioning input only (the policy drops
                                                     the zero-weight term: no gradient is computed)
    path_tracking  tracking as configured, vls 0     + the path-tracking reward's gradient at every sampler step
    vls            tracking + vls_weight W           + the templated staged VLS rewards of the subtask

The arms are paired: every scene is run by all three in a row, from the same layout, with the torch seed
reset to the scene's seed (the sampler's noise starts the same). Each arm first runs a few untimed steps
(the text model loads once per process, torch's first calls are slow). Latency is the wall time of the low tier's
sampler call, ``predict_action_chunk`` (encoder + sampler + guidance gradients, one (1, Ta, A) chunk); ticks
that pop a queued action are not counted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
import torch

import tiers.apps.evaluation.kinds  # noqa: F401  (the privileged kinds a hierarchy may name can be built)
from tiers.apps.evaluation.hierarchy_episode import run_hierarchy_episode
from tiers.apps.evaluation.planning import GoldPlanEcho
from tiers.core.errors import ConfigError
from tiers.core.guidance import Guidance
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.core.protocols import MidLevelPlan, MidLevelPlanner
from tiers.policies.hierarchy.build import hierarchy_embodiment, load_hierarchy
from tiers.policies.hierarchy.drivers import PolicyDriver
from tiers.policies.hierarchy.runtime import HierarchyRuntime
from tiers.sim.backends import DEFAULT_BACKEND, make_backend
from tiers.sim.kitchen.env import KitchenEnv, painted_for_task
from tiers.sim.kitchen.layout import KitchenLayout
from tiers.sim.kitchen.shifts import Shift, shifted_layout
from tiers.sim.kitchen.tasks import Task, all_tasks

# (held, container): objects of the policy's training tasks, none of them the obstacle (the can)
SHIFT_PAIRS = (("apple", "bowl"), ("sponge", "plate"), ("banana", "basket"))
HIERARCHY = "learned_paths"
WARMUP_STEPS = 3  # untimed control steps per arm on the first scene (the text model loads, torch warms up)
GOAL_GAIN_POINTS = 20.0  # issue 6: steered success >= unsteered + 20 percentage points ...
GOAL_LATENCY_RATIO = 3.0  # ... at <= 3x the unsteered sampler latency


class Arm(StrEnum):
    UNSTEERED = "unsteered"
    PATH_TRACKING = "path_tracking"
    VLS = "vls"


def arm_overrides(arm: Arm, *, vls_weight: float) -> list[str]:
    """Hierarchy YAML overrides of the mid tier (``keypoint_paths``) that make ``arm``."""
    if arm is Arm.UNSTEERED:
        return ["mid.settings.tracking_weight=0.0", "mid.settings.vls_weight=0.0"]
    if arm is Arm.PATH_TRACKING:
        return ["mid.settings.vls_weight=0.0"]
    return [f"mid.settings.vls_weight={vls_weight}"]


@dataclass(frozen=True)
class ShiftScene:
    """One test-time-shift scene: a pick-and-place task on a shifted layout."""

    shift: Shift
    task: Task
    seed: int
    layout: KitchenLayout


@dataclass
class ShiftEpisode:
    """One arm's episode on one scene (JSON-able with :func:`dataclasses.asdict`)."""

    shift: str
    task_id: str
    seed: int
    arm: str
    success: bool
    reason: str
    steps: int  # control steps
    wall_s: float  # s for the whole episode
    chunk_ms: list[float] = field(default_factory=list)  # ms per sampler call (one action chunk each)
    reward_calls: dict[str, int] = field(default_factory=dict)  # guidance reward evaluations per term kind
    commands: list[str] = field(default_factory=list)  # subtasks started, with the mid tier's outcome


class CountingMid:
    """A mid tier whose guidance terms count their evaluations by the sampler (the proof that they ran).

    Terms are counted under their kind, the part of the name before ':' (``track``, ``staged``).
    """

    def __init__(self, mid: MidLevelPlanner) -> None:
        self.mid = mid
        self.calls: Counter[str] = Counter()

    def reset(self) -> None:
        self.mid.reset()

    def plan(self, observation: Observation, command: LanguageCommand) -> MidLevelPlan:
        plan = self.mid.plan(observation, command)
        return replace(plan, guidance=tuple(self._counted(term) for term in plan.guidance))

    def __getattr__(self, name: str) -> Any:  # ``last``, ``degrade``: the runtime reads them when present
        return getattr(self.mid, name)

    def _counted(self, term: Guidance) -> Guidance:
        kind = term.name.split(":", 1)[0]

        def reward(actions: torch.Tensor, observation: Observation | None) -> torch.Tensor:
            self.calls[kind] += 1
            return term.reward(actions, observation)

        return Guidance(term.name, reward, term.weight)


@contextmanager
def timed_chunks(policy: Any) -> Iterator[list[float]]:
    """Time every ``policy.predict_action_chunk`` call (s, appended to the yielded list) inside the block.

    ``select_action`` predicts through the instance attribute, so shadowing it times exactly the calls
    that sample a chunk; the class's method is back when the block ends.
    """
    durations: list[float] = []
    predict = policy.predict_action_chunk

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return predict(*args, **kwargs)
        finally:
            durations.append(time.perf_counter() - started)

    policy.predict_action_chunk = timed
    try:
        yield durations
    finally:
        del policy.predict_action_chunk


def pick_place_task(held: str, target: str) -> Task:
    """The first training (not held-out) pick-and-place task moving ``held`` into/onto ``target``."""
    for task in all_tasks():
        if task.family.value != "pick_place" or task.held_out or len(task.plan) != 2:
            continue
        if task.plan[-1].object == held and task.plan[-1].target == target:
            return task
    raise ConfigError(f"no training pick_place task puts the {held} in/on the {target}")


def shift_scenes(
    seeds: list[int], *, pairs: tuple[tuple[str, str], ...] = SHIFT_PAIRS, shifts: tuple[Shift, ...] = tuple(Shift)
) -> tuple[list[ShiftScene], dict[str, int]]:
    """Scenes for every shift, pair and seed, and per shift the count of seeds that cannot host it.

    The objects the task's instruction names by colour are painted so (the layout sampler's colours otherwise).
    """
    scenes: list[ShiftScene] = []
    skipped = dict.fromkeys((shift.value for shift in shifts), 0)
    for shift in shifts:
        for held, target in pairs:
            task = pick_place_task(held, target)
            for seed in seeds:
                layout = shifted_layout(shift, held=held, target=target, seed=seed)
                if layout is None:
                    skipped[shift.value] += 1
                    continue
                scenes.append(ShiftScene(shift, task, seed, painted_for_task(layout, task)))
    return scenes, skipped


# called after every episode with (episodes done, episodes planned, the episode)
EpisodeCallback = Callable[[int, int, ShiftEpisode], None]


def run_shift_benchmark(
    scenes: list[ShiftScene],
    *,
    hierarchy: str = HIERARCHY,
    vls_weight: float = 10.0,
    arms: tuple[Arm, ...] = tuple(Arm),
    max_steps: int | None = None,
    device: str = "cpu",
    on_episode: EpisodeCallback | None = None,
) -> list[ShiftEpisode]:
    """Run every scene (from :func:`shift_scenes`) with every arm (see the module docstring).

    Args:
        scenes: the shifted scenes.
        hierarchy: a hierarchy preset or YAML with a ``keypoint_paths`` mid tier and a learned ``policy`` low tier.
        vls_weight: weight of the staged VLS rewards in the ``vls`` arm.
        max_steps: control steps per episode; None: the kitchen's limit (300 per subtask).
        device: torch device of the low tier.
        on_episode: progress callback.

    Raises:
        ConfigError: the hierarchy's mid tier is not ``keypoint_paths`` or its low tier is not a learned policy.
    """
    env = KitchenEnv(None, backend=make_backend(DEFAULT_BACKEND, hierarchy_embodiment(hierarchy)), render=False)
    episodes: list[ShiftEpisode] = []
    try:
        rigs: dict[Arm, tuple[HierarchyRuntime, CountingMid, Any]] = {}  # arm -> (runtime, its mid, its policy)
        for arm in arms:
            built = load_hierarchy(
                hierarchy, env=env, device=device, overrides=arm_overrides(arm, vls_weight=vls_weight)
            )
            mid, low = built.runtime.mid, built.runtime.low
            if mid is None or built.kinds[1] is None or built.kinds[1].name != "keypoint_paths":
                raise ConfigError(f"hierarchy {hierarchy!r}: the shift benchmark needs a 'keypoint_paths' mid tier")
            if not isinstance(low, PolicyDriver):
                raise ConfigError(f"hierarchy {hierarchy!r}: the shift benchmark steers a learned low tier ('policy')")
            counting = CountingMid(mid)
            built.runtime.mid = counting
            rigs[arm] = (built.runtime, counting, low.policy)
        if scenes:
            first = scenes[0]
            for runtime, _, _ in rigs.values():
                runtime.planner = GoldPlanEcho(first.task.plan)
                run_hierarchy_episode(
                    env, runtime, first.task, seed=first.seed, layout=first.layout, max_steps=WARMUP_STEPS
                )
        total = len(scenes) * len(arms)
        for scene in scenes:
            for arm in arms:  # arms back to back on a scene: a change in machine load hits them alike
                runtime, counting, policy = rigs[arm]
                runtime.planner = GoldPlanEcho(scene.task.plan)  # the controller alone, as `tiers eval --mode control`
                counting.calls.clear()
                torch.manual_seed(scene.seed)
                started = time.perf_counter()
                with timed_chunks(policy) as durations:
                    episode = run_hierarchy_episode(
                        env, runtime, scene.task, seed=scene.seed, layout=scene.layout, max_steps=max_steps
                    )
                details = [event.detail for event in runtime.events if event.kind == "command"]
                result = episode.result
                episodes.append(
                    ShiftEpisode(
                        shift=scene.shift.value,
                        task_id=scene.task.id,
                        seed=scene.seed,
                        arm=arm.value,
                        success=result.success,
                        reason=result.reason,
                        steps=result.steps,
                        wall_s=time.perf_counter() - started,
                        chunk_ms=[1000 * d for d in durations],
                        reward_calls=dict(counting.calls),
                        commands=[f"{text}: {detail}" for text, detail in zip(episode.commands, details, strict=False)],
                    )
                )
                if on_episode is not None:
                    on_episode(len(episodes), total, episodes[-1])
    finally:
        env.close()
    return episodes


def frozen_shift_benchmark(
    seeds: list[int],
    *,
    hierarchy: str = HIERARCHY,
    vls_weight: float = 10.0,
    max_steps: int | None = None,
    threads: int | None = None,
    on_episode: EpisodeCallback | None = None,
) -> dict[str, Any]:
    """:func:`shift_scenes` of ``seeds`` run by :func:`run_shift_benchmark`, as :func:`shift_figures`.

    ``threads``: torch CPU threads while it runs (None: unchanged); the latency figures are per thread count.
    """
    scenes, skipped = shift_scenes(seeds)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        episodes = run_shift_benchmark(
            scenes, hierarchy=hierarchy, vls_weight=vls_weight, max_steps=max_steps, on_episode=on_episode
        )
    finally:
        torch.set_num_threads(previous)
    figures = shift_figures(episodes, skipped)
    figures.update(
        {"frozen_hierarchy": hierarchy, "frozen_vls_weight": vls_weight, "frozen_threads": threads or previous}
    )
    return figures


def shift_figures(episodes: list[ShiftEpisode], skipped: dict[str, int]) -> dict[str, Any]:
    """Flat figures: success per shift and arm (rate), sampler latency per arm (ms), ratio to unsteered.

    Keys start with ``frozen_``; ``frozen_gain_points/<arm>`` is the arm's success minus the unsteered arm's, in
    percentage points over all scenes; ``frozen_goal_met/<arm>`` checks issue 6's goal (gain >= 20 points at a
    latency ratio <= 3).
    """
    figures: dict[str, Any] = {f"frozen_skipped/{shift}": count for shift, count in skipped.items()}
    figures["frozen_episodes"] = len(episodes)
    if not episodes:
        return figures
    arms = list(dict.fromkeys(e.arm for e in episodes))
    shifts = list(dict.fromkeys(e.shift for e in episodes))
    for shift in shifts:
        figures[f"frozen_scenes/{shift}"] = len({(e.task_id, e.seed) for e in episodes if e.shift == shift})
        for arm in arms:
            results = [e.success for e in episodes if e.shift == shift and e.arm == arm]
            figures[f"frozen_success/{shift}/{arm}"] = float(np.mean(results))
    success = {arm: float(np.mean([e.success for e in episodes if e.arm == arm])) for arm in arms}
    latency: dict[str, float] = {}
    for arm in arms:
        figures[f"frozen_success/all/{arm}"] = success[arm]
        chunks = [ms for e in episodes if e.arm == arm for ms in e.chunk_ms]
        calls = sum(sum(e.reward_calls.values()) for e in episodes if e.arm == arm)
        latency[arm] = float(np.mean(chunks)) if chunks else float("nan")
        figures[f"frozen_chunk_ms_mean/{arm}"] = latency[arm]
        figures[f"frozen_chunk_ms_p95/{arm}"] = float(np.percentile(chunks, 95)) if chunks else float("nan")
        figures[f"frozen_chunks/{arm}"] = len(chunks)
        figures[f"frozen_reward_calls_per_chunk/{arm}"] = calls / len(chunks) if chunks else 0.0
    if Arm.UNSTEERED.value in arms:
        base_success, base_latency = success[Arm.UNSTEERED.value], latency[Arm.UNSTEERED.value]
        for arm in arms:
            ratio = latency[arm] / base_latency
            gain = 100 * (success[arm] - base_success)
            figures[f"frozen_latency_ratio/{arm}"] = ratio
            if arm != Arm.UNSTEERED.value:
                figures[f"frozen_gain_points/{arm}"] = gain
                figures[f"frozen_goal_met/{arm}"] = bool(gain >= GOAL_GAIN_POINTS and ratio <= GOAL_LATENCY_RATIO)
    figures["frozen_episode_log"] = [asdict(e) for e in episodes]
    return figures
