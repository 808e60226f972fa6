"""``tiers bench planner``: planner-only accuracy, planner overhead and the sandbox's escape figures.

Figures (all printed and written as JSON by :mod:`tiers.cli.bench`):

* ``grammar_*``: the rule-based :class:`~tiers.policies.high.grammar_planner.GrammarPlanner` on every train and
  held-out instruction: exact match and per-step accuracy against the gold plans (the planner never sees them),
  and its time per instruction;
* ``llm_plumbing_*``: the :class:`~tiers.policies.high.llm_planner.LLMPlanner` through the real HTTP client
  against the local scripted server answering with the grammar planner. **This is a plumbing check, not a
  language model's score**: it must reproduce the grammar figures, and its overhead (prompt building, reply
  parsing, HTTP client) is measured with the model's (here: the server's) latency excluded;
* ``cap_plumbing_*``: Code as Policies the same way: the server answers with code calling the primitives for
  the grammar plan; overhead = code generation bookkeeping + AST + the sandboxed run, model latency excluded;
* ``steer_plumbing_overhead_ms_median``: :class:`~tiers.policies.high.steering.SteeringPlanner`'s time per
  query outside the model, with two real camera images encoded per query;
* ``llm_endpoint_*`` (only when TIERS_LLM_BASE_URL or TIERS_LLM_MODEL_PATH is set): the real model behind it,
  on ``instructions`` instructions per split;
* ``sandbox_*``: the escape corpus (:mod:`tiers.services.sandbox_corpus`): attacks tried / with any effect,
  benign programs tried / rejected.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tiers.apps.evaluation.planning import collect_plan, score_plan
from tiers.apps.scripted_server import ScriptedChatServer, grammar_code_script, grammar_planner_script
from tiers.core.observation import Observation
from tiers.core.protocols import HighLevelPlanner
from tiers.policies.high.code_as_policies import CodeAsPoliciesPlanner
from tiers.policies.high.grammar_planner import GrammarPlanner
from tiers.policies.high.llm_planner import LLMPlanner, llm_planner_from_env
from tiers.policies.high.steering import SteeringConfig, SteeringPlanner
from tiers.services.chat import OpenAIChatBackend, OpenAIChatConfig
from tiers.services.sandbox_corpus import run_corpus
from tiers.sim.kitchen.env import KitchenEnv
from tiers.sim.kitchen.tasks import Task, all_tasks, split


def _blank_observation() -> Observation:
    """A proprioception-only observation: what instruction-only planners are given here (they ignore it)."""
    return Observation(np.zeros(7), np.zeros(7), np.array([0.4, 0.0, 0.3, 1.0, 0.0, 0.0, 0.0]), 0.08, 0.0)


def score_planner(
    make: Callable[[], HighLevelPlanner],
    tasks: Sequence[Task],
    *,
    model_seconds: Callable[[HighLevelPlanner], float] = lambda planner: 0.0,
) -> dict[str, float]:
    """Exact match, per-step accuracy and per-instruction overhead (s, model time excluded) over ``tasks``."""
    planner = make()
    observation = _blank_observation()
    exact, steps, overhead = [], [], []
    for task in tasks:
        model_before = model_seconds(planner)
        start = time.perf_counter()
        texts = collect_plan(planner, task.instruction, observation)
        overhead.append(time.perf_counter() - start - (model_seconds(planner) - model_before))
        score = score_plan(texts, task.plan)
        exact.append(score.exact)
        steps.append(score.step_accuracy)
    return {
        "exact": float(np.mean(exact)) if exact else 0.0,
        "step_accuracy": float(np.mean(steps)) if steps else 0.0,
        "overhead_ms_median": 1000 * statistics.median(overhead) if overhead else 0.0,
        "instructions": float(len(tasks)),
    }


def steering_overhead(*, queries: int = 20) -> dict[str, float]:
    """SteerVLA steering's time per query outside the model (prompt, PNG data URLs of a real 128 px front and
    wrist image, reply parsing), through the real client against the scripted server (period 0: every call)."""
    env = KitchenEnv("pick_place/apple-in-bowl/0", render=True)
    try:
        observation, _ = env.reset(seed=0)
    finally:
        env.close()
    reply = "subtask: pick up the apple\nmotion: move arm forward and down"
    overhead = []
    with ScriptedChatServer(lambda body: reply) as server:
        backend = OpenAIChatBackend(OpenAIChatConfig(base_url=server.base_url, model="scripted-vlm"))
        planner = SteeringPlanner(backend, SteeringConfig(period_s=0.0, cameras=("front", "wrist")))
        planner.reset(observation.instruction)
        for _ in range(queries):
            model_before = planner.model_seconds
            start = time.perf_counter()
            planner.next_command(observation)
            overhead.append(time.perf_counter() - start - (planner.model_seconds - model_before))
        backend.close()
    return {"steer_plumbing_overhead_ms_median": 1000 * statistics.median(overhead), "steer_queries": float(queries)}


def run_planner_benchmark(*, instructions: int = 40, corpus: bool = True, steering_queries: int = 20) -> dict[str, Any]:
    """Every figure of the module docstring.

    Args:
        instructions: instructions per split for the slower planners (Code as Policies plumbing: one sandbox
            process per instruction; a real endpoint); the grammar and LLM plumbing figures use every one.
        corpus: also run the sandbox escape corpus (about 10 s).
        steering_queries: steering queries timed for the steering overhead figure.
    """
    train, held_out = split(all_tasks())
    splits = {"train": train, "held_out": held_out}
    figures: dict[str, Any] = {}

    def sample(tasks: Sequence[Task]) -> list[Task]:
        if instructions <= 0 or instructions >= len(tasks):
            return list(tasks)
        return [tasks[int(i)] for i in np.linspace(0, len(tasks) - 1, instructions)]

    for name, tasks in splits.items():
        for key, value in score_planner(GrammarPlanner, tasks).items():
            figures[f"grammar_{name}_{key}"] = value

    with ScriptedChatServer(grammar_planner_script) as server:
        config = OpenAIChatConfig(base_url=server.base_url, model="scripted-grammar", backoff_s=0.01)
        backend = OpenAIChatBackend(config)
        for name, tasks in splits.items():
            scores = score_planner(
                lambda: LLMPlanner(backend),
                tasks,
                model_seconds=lambda planner: planner.model_seconds,  # type: ignore[attr-defined]
            )
            for key, value in scores.items():
                figures[f"llm_plumbing_{name}_{key}"] = value
        backend.close()

    with ScriptedChatServer(grammar_code_script) as server:
        backend = OpenAIChatBackend(OpenAIChatConfig(base_url=server.base_url, model="scripted-cap", backoff_s=0.01))
        for name, tasks in splits.items():
            scores = score_planner(
                lambda: CodeAsPoliciesPlanner(backend),
                sample(tasks),
                model_seconds=lambda planner: planner.writer.model_seconds,  # type: ignore[attr-defined]
            )
            for key, value in scores.items():
                figures[f"cap_plumbing_{name}_{key}"] = value
        backend.close()

    figures.update(steering_overhead(queries=steering_queries))

    if os.environ.get("TIERS_LLM_BASE_URL") or os.environ.get("TIERS_LLM_MODEL_PATH"):
        for name, tasks in splits.items():
            scores = score_planner(
                llm_planner_from_env,
                sample(tasks),
                model_seconds=lambda planner: planner.model_seconds,  # type: ignore[attr-defined]
            )
            for key, value in scores.items():
                figures[f"llm_endpoint_{name}_{key}"] = value

    if corpus:
        figures.update(run_corpus().figures())
    return figures
