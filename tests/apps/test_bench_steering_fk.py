"""The Feynman–Kac steering benchmark on one kitchen episode: its rows run, chunks are timed, particles resampled."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from tiers.cli import bench


def test_one_episode_of_the_feynman_kac_row_times_chunks_and_counts_resamples(
    tmp_path: Path, parse_cli: Callable[..., argparse.Namespace]
) -> None:
    args = parse_cli("bench", "steering", "--fk", "--fk-hierarchy", "learned_paths_fk", "--fk-limit", "1",
                     "--threads", "1", "--out", str(tmp_path))  # fmt: skip
    assert bench.run(args) == 0
    (row,) = json.loads((tmp_path / "figures.json").read_text())
    assert row["hierarchy"] == "learned_paths_fk" and row["episodes"] == 1 and row["chunks"] > 0
    assert row["chunk_ms_median"] > 0 and row["resamples_per_chunk"] > 0
    assert (tmp_path / "learned_paths_fk" / "results.json").is_file()
