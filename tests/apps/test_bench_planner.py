"""`tiers bench planner` figures: planner-only accuracy on both splits, plumbing checks, overheads."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from tiers.apps.bench.planner import run_planner_benchmark


def test_planner_benchmark_figures(parse_cli: Callable[..., argparse.Namespace]) -> None:
    args = parse_cli("bench", "planner", "--instructions", "3")
    assert args.target == "planner" and args.instructions == 3
    figures = run_planner_benchmark(
        instructions=3, corpus=False, steering_queries=3
    )  # the corpus has its own test (test_sandbox)
    assert figures["grammar_train_instructions"] == 626 and figures["grammar_held_out_instructions"] == 254
    assert figures["grammar_train_exact"] == 1.0 and 0.8 < figures["grammar_held_out_exact"] < 1.0
    for split in ("train", "held_out"):  # plumbing through the real HTTP client reproduces the grammar planner
        assert figures[f"llm_plumbing_{split}_exact"] == figures[f"grammar_{split}_exact"]
        assert figures[f"llm_plumbing_{split}_step_accuracy"] == figures[f"grammar_{split}_step_accuracy"]
        assert figures[f"cap_plumbing_{split}_instructions"] == 3
        assert figures[f"cap_plumbing_{split}_overhead_ms_median"] > 0
    assert figures["steer_queries"] == 3 and figures["steer_plumbing_overhead_ms_median"] > 0
    assert "sandbox_attacks_tried" not in figures
