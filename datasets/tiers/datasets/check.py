"""``tiers dataset check``: validate a LeRobotDataset v3 folder and name every problem precisely.

Checks, in order (each finding names the file, episode, frame and feature it concerns where it has one):

    commit      no interrupted tiers commit (``.tiers/commit.json``) or staged episode left behind
    schema      ``meta/info.json`` readable, codebase v3.0, fps > 0, every feature with a dtype and a shape
    data        every data parquet file readable, holding each non-video feature with its declared shape
    finite      no NaN/Inf in numeric features
    episodes    episode indices contiguous from 0, same set in data and ``meta/episodes``, lengths and
                ``dataset_from_index``/``dataset_to_index`` consistent, global ``index`` contiguous, totals equal
                to ``info.json``'s
    timestamps  per episode: ``frame_index`` = 0..L-1, timestamps strictly increasing and equal to
                frame_index / fps within ``TIMESTAMP_TOLERANCE``
    tasks       every ``task_index`` in ``meta/tasks.parquet``
    videos      every episode's video file exists, spans length / fps seconds, and each file holds as many
                frames as the episodes placed in it
    stats       ``meta/stats.json`` has min/max/mean/std/count for every numeric and visual feature, finite,
                with the feature's size
    cameras     camera models (:mod:`tiers.datasets.cameras`): both columns of each camera, shapes (4,) and
                (12,), an image or depth feature of that camera, and at every frame finite values, fx, fy > 0,
                the principal point inside the image, a proper orthonormal rotation; a warning for a depth
                feature without a camera model (it cannot be unprojected)
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.errors import ContractError
from tiers.datasets.cameras import (
    INTRINSICS_NAMES,
    POSE_NAMES,
    PREFIX,
    camera_model_problems,
    camera_size,
    intrinsics_key,
    pose_key,
    recorded_cameras,
)
from tiers.datasets.staging import JOURNAL, staging_dir, work_dir

TIMESTAMP_TOLERANCE = 1e-4  # s, as lerobot's default ``tolerance_s``
MAX_FINDINGS_PER_KIND = 5  # per (check, file, feature): further ones are counted in one summary finding
DEFAULT_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
STAT_NAMES = ("min", "max", "mean", "std", "count")
VISUAL = ("video", "image")


@dataclass(frozen=True)
class Finding:
    """One problem. ``severity`` is "error" (the dataset is unusable or wrong) or "warning"."""

    severity: str
    check: str
    message: str
    file: str | None = None
    episode: int | None = None
    frame: int | None = None
    feature: str | None = None

    @property
    def where(self) -> str:
        parts = [
            self.file or "",
            f"episode {self.episode}" if self.episode is not None else "",
            f"frame {self.frame}" if self.frame is not None else "",
            f"feature {self.feature}" if self.feature else "",
        ]
        return ", ".join(part for part in parts if part)


@dataclass
class CheckReport:
    """Findings about the dataset at ``root``."""

    root: str
    episodes: int = 0
    frames: int = 0
    checks_run: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors


class _Collector:
    def __init__(self, report: CheckReport):
        self.report = report
        self._counts: dict[tuple[str, str | None, str | None], int] = defaultdict(int)

    def error(self, check: str, message: str, **where: Any) -> None:
        self._add("error", check, message, where)

    def warning(self, check: str, message: str, **where: Any) -> None:
        self._add("warning", check, message, where)

    def _add(self, severity: str, check: str, message: str, where: dict[str, Any]) -> None:
        key = (check, where.get("file"), where.get("feature"))
        self._counts[key] += 1
        if self._counts[key] <= MAX_FINDINGS_PER_KIND:
            self.report.findings.append(Finding(severity, check, message, **where))

    def close(self) -> None:
        for (check, file, feature), count in self._counts.items():
            if count > MAX_FINDINGS_PER_KIND:
                self.report.findings.append(
                    Finding("error", check, f"... and {count - MAX_FINDINGS_PER_KIND} more", file=file, feature=feature)
                )


def check_dataset(root: str | Path, *, video_frames: bool = True) -> CheckReport:
    """Run every check on the dataset folder ``root``; ``video_frames=False`` skips counting frames in mp4 files."""
    root = Path(root)
    report = CheckReport(root=str(root))
    out = _Collector(report)
    _check_commit(root, out)
    info = _check_info(root, out)
    if info is not None:
        data = _check_data(root, info, out)
        episodes = _check_episodes(root, info, data, out)
        if data is not None:
            _check_timestamps(info, data, out)
            _check_tasks(root, data, out)
        if episodes is not None:
            _check_videos(root, info, episodes, out, count_frames=video_frames)
        _check_stats(root, info, out)
        _check_cameras(root, info, out)
        report.episodes = int(info.get("total_episodes", 0))
        report.frames = int(info.get("total_frames", 0))
    out.close()
    return report


def _check_commit(root: Path, out: _Collector) -> None:
    out.report.checks_run.append("commit")
    if (work_dir(root) / JOURNAL).is_file():
        out.error("commit", "an interrupted commit is pending; `tiers record --resume` finishes it", file=JOURNAL)
    if staging_dir(root).exists():
        out.warning("commit", "an unfinished episode is staged; `tiers record --resume` drops it")


def _check_info(root: Path, out: _Collector) -> dict[str, Any] | None:
    out.report.checks_run.append("schema")
    path = root / "meta/info.json"
    if not path.is_file():
        out.error("schema", "missing: not a LeRobotDataset (or no episode was ever committed)", file="meta/info.json")
        return None
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except ValueError as error:
        out.error("schema", f"not valid JSON: {error}", file="meta/info.json")
        return None
    for key in ("codebase_version", "fps", "features", "total_episodes", "total_frames"):
        if key not in info:
            out.error("schema", f"no {key!r} key", file="meta/info.json")
            return None
    if info["codebase_version"] != "v3.0":
        out.error("schema", f"codebase_version is {info['codebase_version']!r}, expected 'v3.0'", file="meta/info.json")
    if not isinstance(info["fps"], int | float) or info["fps"] <= 0:
        out.error("schema", f"fps must be a positive number, got {info['fps']!r}", file="meta/info.json")
        return None
    for key in DEFAULT_COLUMNS:
        if key not in info["features"]:
            out.error("schema", "lerobot's default column is not declared", file="meta/info.json", feature=key)
    for key, feature in info["features"].items():
        shape = feature.get("shape")
        if "dtype" not in feature or not isinstance(shape, list | tuple) or not all(isinstance(n, int) for n in shape):
            out.error(
                "schema", f"needs a dtype and an integer shape, got {feature}", file="meta/info.json", feature=key
            )
    return info


@dataclass
class _Data:
    """Default columns of every data row, concatenated over the data files in path order."""

    episode: NDArray[np.int64]
    frame: NDArray[np.int64]
    index: NDArray[np.int64]
    task: NDArray[np.int64]
    timestamp: NDArray[np.float64]


def _numeric(dtype: str) -> bool:
    return dtype not in (*VISUAL, "string", "language")


def _check_data(root: Path, info: dict[str, Any], out: _Collector) -> _Data | None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    out.report.checks_run += ["data", "finite"]
    features: dict[str, dict[str, Any]] = info["features"]
    expected = [key for key, ft in features.items() if ft.get("dtype") != "video"]
    paths = sorted((root / "data").glob("*/*.parquet"))
    if not paths:
        out.error("data", "no data parquet files under data/", file="data/")
        return None
    columns: dict[str, list[Any]] = defaultdict(list)
    for path in paths:
        name = path.relative_to(root).as_posix()
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as error:
            out.error("data", f"unreadable parquet file: {error}", file=name)
            continue
        missing = [key for key in expected if key not in table.column_names]
        for key in missing:
            out.error("data", "declared feature has no column", file=name, feature=key)
        if any(key not in table.column_names for key in DEFAULT_COLUMNS):
            continue
        episodes = table.column("episode_index").to_numpy()
        frames = table.column("frame_index").to_numpy()
        for key in DEFAULT_COLUMNS:
            columns[key].append(table.column(key).to_numpy())
        for key in expected:
            feature = features[key]
            if key in missing or not _numeric(feature["dtype"]):
                continue
            column = table.column(key).combine_chunks()
            size = int(np.prod(feature["shape"]))
            if pa.types.is_list(column.type) or pa.types.is_fixed_size_list(column.type):
                lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
                for row in np.flatnonzero(lengths != size)[:MAX_FINDINGS_PER_KIND]:
                    out.error(
                        "data",
                        f"has {lengths[row]} values, declared shape {tuple(feature['shape'])}",
                        file=name,
                        episode=int(episodes[row]),
                        frame=int(frames[row]),
                        feature=key,
                    )
                values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
                if values.size != size * len(column):
                    continue
                values = values.reshape(len(column), size)
            else:
                if size != 1:
                    out.error(
                        "data", f"stored as scalars, declared shape {tuple(feature['shape'])}", file=name, feature=key
                    )
                    continue
                values = column.to_numpy(zero_copy_only=False).reshape(-1, 1)
            if np.issubdtype(values.dtype, np.floating):
                bad = ~np.isfinite(values)
                for row in np.flatnonzero(bad.any(axis=1)):
                    which = np.flatnonzero(bad[row]).tolist()
                    out.error(
                        "finite",
                        f"non-finite value {values[row, which[0]]} at component(s) {which}",
                        file=name,
                        episode=int(episodes[row]),
                        frame=int(frames[row]),
                        feature=key,
                    )
    if not columns:
        return None
    joined = {key: np.concatenate(parts) for key, parts in columns.items()}
    return _Data(
        episode=joined["episode_index"].astype(np.int64),
        frame=joined["frame_index"].astype(np.int64),
        index=joined["index"].astype(np.int64),
        task=joined["task_index"].astype(np.int64),
        timestamp=joined["timestamp"].astype(np.float64),
    )


def _check_episodes(
    root: Path, info: dict[str, Any], data: _Data | None, out: _Collector
) -> list[dict[str, Any]] | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.report.checks_run.append("episodes")
    rows: list[dict[str, Any]] = []
    for path in sorted((root / "meta/episodes").glob("*/*.parquet")):
        name = path.relative_to(root).as_posix()
        try:
            schema = pq.read_schema(path)
            wanted = [c for c in schema.names if not c.startswith("stats/")]
            rows += pq.read_table(path, columns=wanted).to_pylist()
        except (pa.ArrowException, OSError) as error:
            out.error("episodes", f"unreadable parquet file: {error}", file=name)
            return None
    meta = "meta/episodes/"
    if not rows:
        out.error("episodes", "no episode metadata", file=meta)
        return None
    indices = [int(row["episode_index"]) for row in rows]
    if indices != list(range(len(indices))):
        out.error("episodes", f"episode indices are not 0..{len(indices) - 1} in order: {indices[:20]}", file=meta)
    if len(rows) != info["total_episodes"]:
        out.error("episodes", f"{len(rows)} episodes in metadata, info.json says {info['total_episodes']}", file=meta)
    total = sum(int(row["length"]) for row in rows)
    if total != info["total_frames"]:
        out.error("episodes", f"episode lengths sum to {total}, info.json says {info['total_frames']}", file=meta)
    start = 0
    for row in rows:
        episode, length = int(row["episode_index"]), int(row["length"])
        if (row["dataset_from_index"], row["dataset_to_index"]) != (start, start + length):
            out.error(
                "episodes",
                f"spans index [{row['dataset_from_index']}, {row['dataset_to_index']}), "
                f"expected [{start}, {start + length})",
                file=meta,
                episode=episode,
            )
        start += length
    if data is None:
        return rows
    if not np.array_equal(data.index, np.arange(len(data.index))):
        first = int(np.flatnonzero(data.index != np.arange(len(data.index)))[0])
        out.error(
            "episodes", f"global index is not contiguous from 0 (row {first} has {data.index[first]})", file="data/"
        )
    counts = dict(zip(*np.unique(data.episode, return_counts=True), strict=True))
    for episode in sorted(set(counts) - set(indices)):
        out.error(
            "episodes",
            "rows in data files but no episode metadata (an interrupted write?)",
            file="data/",
            episode=int(episode),
        )
    for row in rows:
        episode = int(row["episode_index"])
        if counts.get(episode, 0) != int(row["length"]):
            out.error(
                "episodes",
                f"{counts.get(episode, 0)} rows in data, metadata length {row['length']}",
                file="data/",
                episode=episode,
            )
    return rows


def _check_timestamps(info: dict[str, Any], data: _Data, out: _Collector) -> None:
    out.report.checks_run.append("timestamps")
    fps = float(info["fps"])
    for episode in np.unique(data.episode):
        rows = np.flatnonzero(data.episode == episode)
        frames, stamps = data.frame[rows], data.timestamp[rows]
        expected = np.arange(len(rows))
        if not np.array_equal(frames, expected):
            bad = int(np.flatnonzero(frames != expected)[0])
            out.error(
                "timestamps",
                f"frame_index {frames[bad]} at position {bad}",
                episode=int(episode),
                frame=int(frames[bad]),
                feature="frame_index",
            )
        steps = np.diff(stamps)
        for bad in np.flatnonzero(steps <= 0)[:MAX_FINDINGS_PER_KIND]:
            out.error(
                "timestamps",
                f"timestamp {stamps[bad + 1]:.6f} s does not follow {stamps[bad]:.6f} s",
                episode=int(episode),
                frame=int(frames[bad + 1]),
                feature="timestamp",
            )
        drift = np.abs(stamps - frames / fps)
        for bad in np.flatnonzero(drift > TIMESTAMP_TOLERANCE)[:MAX_FINDINGS_PER_KIND]:
            out.error(
                "timestamps",
                f"timestamp {stamps[bad]:.6f} s, expected frame_index / fps = {frames[bad] / fps:.6f} s",
                episode=int(episode),
                frame=int(frames[bad]),
                feature="timestamp",
            )


def _check_tasks(root: Path, data: _Data, out: _Collector) -> None:
    import pyarrow.parquet as pq

    out.report.checks_run.append("tasks")
    path = root / "meta/tasks.parquet"
    if not path.is_file():
        out.error("tasks", "missing", file="meta/tasks.parquet")
        return
    known = set(pq.read_table(path).column("task_index").to_pylist())
    for task in sorted(set(data.task.tolist()) - known):
        episode = int(data.episode[np.flatnonzero(data.task == task)[0]])
        out.error(
            "tasks", f"task_index {task} is not in meta/tasks.parquet", file="meta/tasks.parquet", episode=episode
        )


def _check_videos(
    root: Path, info: dict[str, Any], episodes: list[dict[str, Any]], out: _Collector, *, count_frames: bool
) -> None:
    out.report.checks_run.append("videos")
    keys = [key for key, ft in info["features"].items() if ft.get("dtype") == "video"]
    template = info.get("video_path")
    if keys and not template:
        out.error("videos", "video features but no video_path template", file="meta/info.json")
        return
    fps = float(info["fps"])
    for key in keys:
        per_file: dict[str, int] = defaultdict(int)
        for row in episodes:
            episode, length = int(row["episode_index"]), int(row["length"])
            try:
                chunk, index = row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"]
                start, stop = float(row[f"videos/{key}/from_timestamp"]), float(row[f"videos/{key}/to_timestamp"])
            except KeyError:
                out.error("videos", "no video location in the episode metadata", episode=episode, feature=key)
                continue
            name = str(template).format(video_key=key, chunk_index=chunk, file_index=index)
            if not (root / name).is_file():
                out.error("videos", "video file missing", file=name, episode=episode, feature=key)
                continue
            span = round((stop - start) * fps)
            if span != length:
                out.error(
                    "videos",
                    f"spans {stop - start:.3f} s = {span} frames, episode has {length}",
                    file=name,
                    episode=episode,
                    feature=key,
                )
            per_file[name] += length
        if count_frames:
            for name, expected in per_file.items():
                found = count_video_frames(root / name)
                if found != expected:
                    out.error("videos", f"holds {found} frames, its episodes have {expected}", file=name, feature=key)


def count_video_frames(path: Path) -> int:
    """Frames in the first video stream of ``path`` (packets counted by demuxing; no decoding)."""
    import av

    container = av.open(str(path))
    try:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size > 0)
    finally:
        container.close()


def _check_stats(root: Path, info: dict[str, Any], out: _Collector) -> None:
    out.report.checks_run.append("stats")
    path = root / "meta/stats.json"
    if not path.is_file():
        out.error("stats", "missing", file="meta/stats.json")
        return
    try:
        stats: dict[str, dict[str, Any]] = json.loads(path.read_text())
    except ValueError as error:
        out.error("stats", f"not valid JSON: {error}", file="meta/stats.json")
        return
    for key, feature in info["features"].items():
        if feature.get("dtype") in ("string", "language"):
            continue
        entry = stats.get(key)
        if entry is None:
            out.error("stats", "no statistics", file="meta/stats.json", feature=key)
            continue
        for stat in STAT_NAMES:
            if stat not in entry:
                out.error("stats", f"no {stat!r}", file="meta/stats.json", feature=key)
                continue
            values = np.asarray(entry[stat], dtype=np.float64)
            if not np.all(np.isfinite(values)):
                out.error("stats", f"{stat!r} has non-finite values", file="meta/stats.json", feature=key)
            elif stat != "count" and feature["dtype"] not in VISUAL and values.size != int(np.prod(feature["shape"])):
                out.error(
                    "stats",
                    f"{stat!r} has {values.size} values, feature shape {tuple(feature['shape'])}",
                    file="meta/stats.json",
                    feature=key,
                )


def _check_cameras(root: Path, info: dict[str, Any], out: _Collector) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.report.checks_run.append("cameras")
    features: dict[str, dict[str, Any]] = info["features"]
    cameras = recorded_cameras(features)
    for key in features:
        if key.startswith(PREFIX + ".") and key.rsplit(".", 1)[0][len(PREFIX) + 1 :] not in cameras:
            out.error("cameras", "a camera model needs both intrinsics and base_from_camera", feature=key)
    valid = []
    for camera in cameras:
        shapes = {intrinsics_key(camera): len(INTRINSICS_NAMES), pose_key(camera): len(POSE_NAMES)}
        wrong = [key for key, size in shapes.items() if tuple(features[key].get("shape", ())) != (size,)]
        for key in wrong:
            out.error("cameras", f"shape {features[key].get('shape')}, expected ({shapes[key]},)", feature=key)
        try:
            size = camera_size(features, camera)
        except ContractError as error:
            out.error("cameras", str(error), file="meta/info.json", feature=intrinsics_key(camera))
            continue
        if not wrong:
            valid.append((camera, size))
    for key, feature in features.items():
        camera = key.rsplit(".", 1)[-1]
        if (feature.get("info") or {}).get("is_depth_map") and camera not in cameras:
            out.warning("cameras", "depth without a camera model: it cannot be turned into points", feature=key)
    if not valid:
        return
    for path in sorted((root / "data").glob("*/*.parquet")):
        name = path.relative_to(root).as_posix()
        for camera, (width, height) in valid:
            columns = [intrinsics_key(camera), pose_key(camera), "episode_index", "frame_index"]
            try:
                table = pq.read_table(path, columns=columns)
            except (pa.ArrowException, OSError, KeyError):
                continue  # an unreadable file or a missing column is a finding of the data check already
            intrinsics = np.asarray(table.column(columns[0]).to_pylist(), dtype=np.float64)
            pose = np.asarray(table.column(columns[1]).to_pylist(), dtype=np.float64)
            if intrinsics.shape != (len(table), len(INTRINSICS_NAMES)) or pose.shape != (len(table), len(POSE_NAMES)):
                continue  # rows of the wrong size: named by the data check
            episodes, frames = table.column("episode_index").to_numpy(), table.column("frame_index").to_numpy()
            for row, column, problem in camera_model_problems(intrinsics, pose, width, height):
                out.error(
                    "cameras",
                    problem,
                    file=name,
                    episode=int(episodes[row]),
                    frame=int(frames[row]),
                    feature=f"{PREFIX}.{camera}.{column}",
                )
