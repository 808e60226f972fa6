"""``tiers dataset show``: what a LeRobotDataset v3 holds, and one episode as a video, a contact sheet and a plot.

:func:`summarize` reads only metadata and the data parquet files (no video decoding), so it is quick on large
datasets. It works on any LeRobotDataset v3; the tiers extras (per-episode success from
``meta/tiers_episodes.jsonl``, language columns, corrections from ``meta/tiers_corrections.jsonl``) are reported
where present, and so are the camera models (intrinsics, where each camera sits, how far it moves).

One episode (:func:`episode_frames` decodes one camera through lerobot):
    video           (H·scale, W·scale + band) mp4 at the dataset's fps with the task, subtask, language motion
                    and active correction written under each frame;
    contact sheet   a PNG grid of evenly spaced frames captioned with frame index, time and language motion;
    plot            a PNG of the state and action components over time (s), subtask changes marked.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.errors import ContractError
from tiers.core.features import FeatureKey
from tiers.datasets.cameras import camera_size, intrinsics_key, matrices, pose_key, recorded_cameras
from tiers.datasets.corrections import ACTIVE_CORRECTION, INTERJECTION, read_corrections
from tiers.datasets.language_motion import runs
from tiers.datasets.recorder import dataset_size_bytes, read_episode_log
from tiers.services.video import write_video

# per-frame language columns reported, in this order, when the dataset has them
LANGUAGE_COLUMNS = (
    FeatureKey.SUBTASK.value,
    FeatureKey.LANGUAGE_MOTION.value,
    FeatureKey.EXPERT_MOTION.value,
    ACTIVE_CORRECTION,
    INTERJECTION,
)
TOP_VALUES = 5  # most frequent values listed per language column


@dataclass
class FeatureSummary:
    key: str
    dtype: str
    shape: tuple[int, ...]


@dataclass
class EpisodeSummary:
    """One episode. ``success`` is None when the dataset has no tiers episode log."""

    index: int
    frames: int
    duration: float  # s, frames / fps
    task: str
    success: bool | None = None
    task_id: str = ""
    subtasks: int = 0  # distinct subtask texts
    motions: int = 0  # language-motion segments (runs of one phrase)
    interjections: int = 0  # frames at which a correction arrived


@dataclass
class LanguageSummary:
    """One per-frame language column: distinct non-empty values, frames holding one, the most frequent ones."""

    column: str
    distinct: int
    frames: int
    top: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class CameraSummary:
    """One camera's recorded model: intrinsics of its first frame, and how far its pose moves over the dataset.

    ``intrinsics_vary``: fx, fy, cx or cy differ between frames (a zoom; never in the kitchen).
    ``travel``: the largest distance (m) of the camera's origin from its first-frame position: 0 for a static
    camera, centimetres to decimetres for a wrist camera.
    """

    name: str
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: tuple[float, float, float]  # first frame, base frame (m)
    depth: bool  # the dataset holds this camera's depth
    intrinsics_vary: bool
    travel: float


@dataclass
class DatasetSummary:
    root: str
    robot_type: str
    fps: int
    codebase_version: str
    episodes: int
    frames: int
    size_bytes: int
    features: list[FeatureSummary] = field(default_factory=list)
    tasks: list[tuple[str, int]] = field(default_factory=list)  # (task text, episodes)
    episode_list: list[EpisodeSummary] = field(default_factory=list)
    language: list[LanguageSummary] = field(default_factory=list)
    cameras: list[CameraSummary] = field(default_factory=list)  # cameras with a recorded model
    correction_events: int = 0  # interjection events in meta/tiers_corrections.jsonl
    intervention_spans: int = 0

    @property
    def duration(self) -> float:
        """s of recorded robot time."""
        return self.frames / self.fps if self.fps else 0.0

    @property
    def success_rate(self) -> float | None:
        known = [e.success for e in self.episode_list if e.success is not None]
        return sum(known) / len(known) if known else None


def read_info(root: Path) -> dict[str, Any]:
    """``meta/info.json``; raises :class:`ContractError` naming the file when it is missing or unreadable."""
    path = root / "meta/info.json"
    if not path.is_file():
        raise ContractError(f"{path}: not found; {root} is not a LeRobotDataset folder")
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except ValueError as error:
        raise ContractError(f"{path}: not valid JSON ({error})") from error
    return info


def read_frames(root: Path, columns: list[str]) -> dict[str, list[Any]]:
    """``columns`` of every data parquet file, concatenated in global index order (no video decoding)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for path in sorted((root / "data").glob("*/*.parquet")):
        names = set(pq.read_schema(path).names)
        missing = [column for column in columns if column not in names]
        if missing:
            raise ContractError(f"{path}: no column(s) {missing}")
        tables.append(pq.read_table(path, columns=columns))
    if not tables:
        return {column: [] for column in columns}
    table = pa.concat_tables(tables).sort_by("index") if "index" in columns else pa.concat_tables(tables)
    frames: dict[str, list[Any]] = table.to_pydict()
    return frames


def read_tasks(root: Path) -> dict[int, str]:
    """task_index -> task text, from ``meta/tasks.parquet``."""
    import pyarrow.parquet as pq

    path = root / "meta/tasks.parquet"
    if not path.is_file():
        return {}
    table = pq.read_table(path).to_pydict()
    return dict(zip(table["task_index"], table["task"], strict=True))


def summarize(root: str | Path) -> DatasetSummary:
    """Counts, features, tasks, per-episode lengths and success, language columns and corrections of ``root``.

    Raises:
        ContractError: ``root`` has no readable ``meta/info.json``, or a data file lacks a declared column.
    """
    root = Path(root)
    info = read_info(root)
    features = info.get("features", {})
    summary = DatasetSummary(
        root=str(root),
        robot_type=str(info.get("robot_type") or ""),
        fps=int(info.get("fps", 0)),
        codebase_version=str(info.get("codebase_version", "")),
        episodes=int(info.get("total_episodes", 0)),
        frames=int(info.get("total_frames", 0)),
        size_bytes=dataset_size_bytes(root),
        features=[FeatureSummary(key, spec["dtype"], tuple(spec["shape"])) for key, spec in features.items()],
    )
    language = [column for column in LANGUAGE_COLUMNS if column in features]
    table = read_frames(root, ["index", "episode_index", "task_index", *language])
    tasks = read_tasks(root)
    records = {r.episode_index: r for r in read_episode_log(root) if r.episode_index is not None}
    by_episode: dict[int, list[int]] = {}
    for row, episode in enumerate(table["episode_index"]):
        by_episode.setdefault(int(episode), []).append(row)
    task_episodes: Counter[str] = Counter()
    for episode, rows in sorted(by_episode.items()):
        task = tasks.get(int(table["task_index"][rows[0]]), "")
        task_episodes[task] += 1
        record = records.get(episode)
        column = {name: [table[name][row] for row in rows] for name in language}
        summary.episode_list.append(
            EpisodeSummary(
                index=episode,
                frames=len(rows),
                duration=len(rows) / summary.fps if summary.fps else 0.0,
                task=task,
                success=record.success if record else None,
                task_id=record.task_id if record else "",
                subtasks=len({text for text in column.get(FeatureKey.SUBTASK.value, []) if text}),
                motions=len(runs(column.get(FeatureKey.LANGUAGE_MOTION.value, []))),
                interjections=sum(1 for text in column.get(INTERJECTION, []) if text),
            )
        )
    summary.tasks = task_episodes.most_common()
    for name in language:
        values = Counter(text for text in table[name] if text)
        summary.language.append(
            LanguageSummary(name, len(values), sum(values.values()), values.most_common(TOP_VALUES))
        )
    summary.cameras = camera_summaries(root, features)
    log = read_corrections(root)
    summary.correction_events, summary.intervention_spans = len(log.events), len(log.spans)
    return summary


def camera_summaries(root: Path, features: dict[str, Any]) -> list[CameraSummary]:
    """The recorded model of every camera that has one (read from the data parquet files, no decoding)."""
    cameras = recorded_cameras(features)
    if not cameras:
        return []
    table = read_frames(root, [key for camera in cameras for key in (intrinsics_key(camera), pose_key(camera))])
    summaries = []
    for camera in cameras:
        intrinsics = np.asarray(table[intrinsics_key(camera)], dtype=np.float64).reshape(-1, 4)
        pose = np.asarray(table[pose_key(camera)], dtype=np.float64).reshape(-1, 12)
        if not len(intrinsics):
            continue
        width, height = camera_size(features, camera)
        _, transforms = matrices(intrinsics, pose)
        positions = transforms[:, :3, 3]
        fx, fy, cx, cy = (float(value) for value in intrinsics[0])
        summaries.append(
            CameraSummary(
                name=camera,
                width=width,
                height=height,
                fx=fx,
                fy=fy,
                cx=cx,
                cy=cy,
                position=(float(positions[0, 0]), float(positions[0, 1]), float(positions[0, 2])),
                depth=FeatureKey.DEPTH.camera(camera) in features,
                intrinsics_vary=bool(np.ptp(intrinsics, axis=0).max() > 1e-6),
                travel=float(np.linalg.norm(positions - positions[0], axis=1).max()),
            )
        )
    return summaries


# --- one episode ------------------------------------------------------------------------------------------------


@dataclass
class EpisodeFrames:
    """The frames of one episode: language columns, state and action, and one camera's images.

    Attributes:
        index: episode index.
        fps: frames per second.
        task: instruction text.
        language: column -> T strings (the columns of :data:`LANGUAGE_COLUMNS` the dataset has).
        state: (T, S) float32, ``observation.state``; empty (T, 0) when absent.
        action: (T, A) float32; empty (T, 0) when absent.
        state_names, action_names: component names from ``meta/info.json``.
        images: (T, H, W, 3) uint8 frames of ``camera``; None when not decoded.
        camera: the camera key decoded.
    """

    index: int
    fps: int
    task: str
    language: dict[str, list[str]]
    state: NDArray[np.float32]
    action: NDArray[np.float32]
    state_names: list[str]
    action_names: list[str]
    images: NDArray[np.uint8] | None = None
    camera: str = ""

    @property
    def length(self) -> int:
        return int(self.state.shape[0])

    def segments(self, column: str) -> list[tuple[str, int, int]]:
        """Runs (text, start frame, stop frame) of one language column."""
        return runs(self.language.get(column, []))


def episode_frames(root: str | Path, episode: int, *, camera: str | None = None) -> EpisodeFrames:
    """Read episode ``episode``; decode ``camera`` (a full key, ``observation.images.<name>``) when given.

    Raises:
        ContractError: no such episode or camera (the message lists the ones there are).
    """
    root = Path(root)
    info = read_info(root)
    features = info.get("features", {})
    if not 0 <= episode < int(info.get("total_episodes", 0)):
        raise ContractError(f"{root}: no episode {episode}; it has episodes 0..{int(info['total_episodes']) - 1}")
    language = [column for column in LANGUAGE_COLUMNS if column in features]
    vectors = [key for key in (FeatureKey.STATE.value, FeatureKey.ACTION.value) if key in features]
    table = read_frames(root, ["index", "episode_index", "task_index", *language, *vectors])
    rows = [row for row, value in enumerate(table["episode_index"]) if int(value) == episode]

    def matrix(key: str) -> NDArray[np.float32]:
        if key not in features:
            return np.zeros((len(rows), 0), dtype=np.float32)
        return np.asarray([table[key][row] for row in rows], dtype=np.float32)

    def names(key: str) -> list[str]:
        listed = features.get(key, {}).get("names")
        return [str(n) for n in listed] if isinstance(listed, list) else []

    frames = EpisodeFrames(
        index=episode,
        fps=int(info["fps"]),
        task=read_tasks(root).get(int(table["task_index"][rows[0]]), ""),
        language={column: [str(table[column][row]) for row in rows] for column in language},
        state=matrix(FeatureKey.STATE.value),
        action=matrix(FeatureKey.ACTION.value),
        state_names=names(FeatureKey.STATE.value),
        action_names=names(FeatureKey.ACTION.value),
    )
    if camera is not None:
        frames.images = _decode_camera(root, info, episode, camera)
        frames.camera = camera
    return frames


def _decode_camera(root: Path, info: dict[str, Any], episode: int, camera: str) -> NDArray[np.uint8]:
    """(T, H, W, 3) uint8 frames of ``camera`` in episode ``episode``, decoded by lerobot (pyav)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    cameras = [key for key, spec in info["features"].items() if spec["dtype"] in ("video", "image")]
    if camera not in cameras:
        raise ContractError(f"{root}: no camera {camera!r}; its cameras are {cameras}")
    dataset = LeRobotDataset(f"local/{root.name}", root=root, episodes=[episode], video_backend="pyav")
    for key in list(dataset.meta.video_keys):  # decode only the camera asked for (see loading._skip_unloaded_videos)
        if key != camera:
            del dataset.meta.info.features[key]
    images = [dataset[i][camera] for i in range(len(dataset))]  # (C, H, W) float in [0, 1] each
    stacked = np.stack([image.permute(1, 2, 0).numpy() for image in images])  # (T, H, W, C)
    if stacked.shape[-1] == 1:
        stacked = np.repeat(stacked, 3, axis=-1)  # a depth/grey camera shown in grey
    return np.asarray(np.clip(stacked * 255.0 + 0.5, 0, 255), dtype=np.uint8)


def default_camera(root: str | Path) -> str:
    """The first RGB camera of the dataset (``observation.images.front`` for tiers recordings)."""
    features = read_info(Path(root)).get("features", {})
    rgb = [k for k, s in features.items() if s["dtype"] in ("video", "image") and k.startswith(FeatureKey.IMAGES)]
    if not rgb:
        raise ContractError(f"{root}: the dataset has no camera to show")
    preferred = FeatureKey.IMAGES.camera("front")
    return preferred if preferred in rgb else rgb[0]


def captions(frames: EpisodeFrames, t: int) -> list[tuple[str, tuple[int, int, int]]]:
    """Text lines (with RGB colours) written under frame ``t``."""
    lines = [(f"task: {frames.task}", (255, 255, 255))]
    lines.append((f"t={t / frames.fps:5.2f}s  frame {t}", (200, 200, 200)))
    for column, colour in (
        (FeatureKey.SUBTASK.value, (140, 220, 255)),
        (FeatureKey.LANGUAGE_MOTION.value, (255, 230, 120)),
        (ACTIVE_CORRECTION, (255, 120, 120)),
    ):
        text = frames.language.get(column, [""] * frames.length)[t]
        if text or column != ACTIVE_CORRECTION:
            lines.append((f"{column.replace('_', ' ')}: {text}", colour))
    return lines


def annotate(
    image: NDArray[np.uint8], lines: list[tuple[str, tuple[int, int, int]]], *, scale: int
) -> NDArray[np.uint8]:
    """``image`` (H, W, 3) upscaled by ``scale`` with a black band holding ``lines`` below it."""
    from PIL import Image, ImageDraw, ImageFont

    picture = Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.Resampling.BILINEAR)
    font = ImageFont.load_default(size=max(10, 4 * scale))
    line_height = max(12, 5 * scale)
    band = line_height * len(lines) + 6
    canvas = Image.new("RGB", (picture.width, picture.height + band))
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for row, (text, colour) in enumerate(lines):
        draw.text((4, picture.height + 3 + row * line_height), text, fill=colour, font=font)
    return np.asarray(canvas, dtype=np.uint8)


def write_episode_video(frames: EpisodeFrames, path: str | Path, *, scale: int = 3) -> Path:
    """The episode's camera frames with captions as an H.264 mp4 at the dataset's fps."""
    if frames.images is None:
        raise ContractError("write_episode_video needs decoded images (episode_frames(..., camera=...))")
    annotated = [annotate(image, captions(frames, t), scale=scale) for t, image in enumerate(frames.images)]
    # pad every frame's band to the tallest one (a correction line appears and disappears)
    height = max(frame.shape[0] for frame in annotated)
    padded = [np.pad(frame, ((0, height - frame.shape[0]), (0, 0), (0, 0))) for frame in annotated]
    return write_video(path, padded, fps=frames.fps)


def write_contact_sheet(frames: EpisodeFrames, path: str | Path, *, count: int = 8, columns: int = 4) -> Path:
    """A PNG grid of ``count`` evenly spaced frames, each captioned with its time and language motion."""
    from PIL import Image

    if frames.images is None:
        raise ContractError("write_contact_sheet needs decoded images (episode_frames(..., camera=...))")
    picks = np.unique(np.linspace(0, frames.length - 1, num=min(count, frames.length)).round().astype(int))
    motion = frames.language.get(FeatureKey.LANGUAGE_MOTION.value, [""] * frames.length)
    subtask = frames.language.get(FeatureKey.SUBTASK.value, [""] * frames.length)
    tiles = [
        annotate(
            frames.images[t],
            [
                (f"{t / frames.fps:.2f}s #{t}", (200, 200, 200)),
                (subtask[t], (140, 220, 255)),
                (motion[t], (255, 230, 120)),
            ],
            scale=2,
        )
        for t in picks
    ]
    height, width = max(tile.shape[0] for tile in tiles), max(tile.shape[1] for tile in tiles)
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * width, rows * height))
    for number, tile in enumerate(tiles):
        sheet.paste(Image.fromarray(tile), ((number % columns) * width, (number // columns) * height))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def write_episode_plot(frames: EpisodeFrames, path: str | Path) -> Path:
    """A PNG of the state and action components against time (s), with subtask changes as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    time = np.arange(frames.length) / frames.fps
    figure, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    for axis, values, labels, title in (
        (axes[0], frames.state, frames.state_names, "observation.state"),
        (axes[1], frames.action, frames.action_names, "action"),
    ):
        for component in range(values.shape[1]):
            label = labels[component] if component < len(labels) else str(component)
            axis.plot(time, values[:, component], linewidth=1.0, label=label)
        axis.set_title(title)
        axis.grid(alpha=0.3)
        if values.shape[1]:
            axis.legend(fontsize=7, ncol=4, loc="upper right")
        for text, start, _ in frames.segments(FeatureKey.SUBTASK.value)[1:]:
            axis.axvline(start / frames.fps, color="grey", linestyle="--", linewidth=0.8)
            if axis is axes[0]:
                axis.annotate(text, (start / frames.fps, 1.0), xycoords=("data", "axes fraction"), fontsize=7)
    axes[1].set_xlabel("time (s)")
    figure.suptitle(f"episode {frames.index}: {frames.task}")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
