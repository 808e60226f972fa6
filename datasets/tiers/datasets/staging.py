"""Crash-safe episode commits into a LeRobotDataset: stage, journal, rename, roll forward.

lerobot's writer keeps the data and episode-metadata parquet files open until ``finalize()`` (a killed
process leaves footerless, unreadable parquet files), rewrites ``meta/info.json`` and ``meta/stats.json`` in
place after each episode, and appends videos into shared mp4 files. So tiers never lets lerobot write into the
dataset itself. Each episode is written by lerobot into a staging copy and committed by renames::

    PATH/                           the dataset lerobot loads
    PATH/.tiers/staging/            episode being recorded: ``LeRobotDataset.resume`` on a copy of PATH/meta
                                    (the newest episode-metadata file is a hard link, never written)
    PATH/.tiers/commit.json         journal of the renames of one commit; exists only while committing

    begin        copy PATH/meta/*.json|parquet|jsonl and link the newest episode-metadata file into staging/meta;
                 LeRobotDataset.resume(staging) (create() for the first episode)
    record       add_frame ... (only staging/images/ is written)
    end          save_episode(); finalize()  -> staging holds the episode's NEW files: data/.../file-K.parquet,
                 meta/episodes/.../file-K.parquet, videos/<key>/.../file-K.mp4 (resume always opens new files),
                 plus updated meta/tasks.parquet, meta/stats.json, meta/info.json and tiers' jsonl
    commit       write the journal atomically; rename videos, data, episode metadata, tasks, stats, jsonl, and
                 meta/info.json LAST (the commit point); delete the journal and the staging folder

A kill before the journal exists loses only the staged episode (``recover`` deletes it). A kill during the
renames (milliseconds) leaves a dataset lerobot still opens with the previous episodes (new files appear in
an order that only adds rows beyond ``info.json``'s counts), and ``recover`` finishes the renames. Renames
within one filesystem are atomic, and every replaced file is replaced whole, so no file is ever half-written.
(SIGKILL keeps the page cache; surviving power loss would additionally need fsync, which is not done.)
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tiers.core.errors import ContractError

WORK_DIR = ".tiers"  # tiers' private folder inside a dataset
STAGING_DIR = "staging"
JOURNAL = "commit.json"
INFO = Path("meta/info.json")
# order of the renames: later groups make earlier ones visible, info.json is the commit point
COMMIT_ORDER = ("videos/", "data/", "meta/episodes/", "meta/tasks.parquet", "meta/stats.json", "meta/")


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` found: an interrupted commit rolled forward, an unfinished episode discarded."""

    rolled_forward: int  # files renamed to finish an interrupted commit
    discarded_staging: bool  # an episode being recorded was dropped


def work_dir(root: Path) -> Path:
    return root / WORK_DIR


def staging_dir(root: Path) -> Path:
    return work_dir(root) / STAGING_DIR


def stage_metadata(root: Path, staging: Path) -> bool:
    """Prepare ``staging`` for ``LeRobotDataset.resume``: ``root/meta``'s files and its newest episode file.

    Returns:
        False when ``root`` has no committed episode yet (the caller then uses ``LeRobotDataset.create``).
    """
    if staging.exists():
        shutil.rmtree(staging)
    if not (root / INFO).is_file():
        return False
    episode_files = sorted((root / "meta/episodes").glob("*/*.parquet"))
    for source in sorted((root / "meta").glob("*")):
        if source.is_file() and source.suffix != ".tmp":
            (staging / "meta").mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, staging / "meta" / source.name)
    # Only the newest episode-metadata file: resuming reads nothing but the last episode's row (its chunk/file
    # indices and end frame), and each resume caches what it loads in Hugging Face's datasets cache, which would
    # otherwise grow with the square of the number of episodes.
    for source in episode_files[-1:]:
        target = staging / source.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)  # lerobot's writer never writes it: a resumed writer opens a new file
        except OSError:
            shutil.copy2(source, target)  # filesystems without hard links
    return True


def plan_commit(root: Path, staging: Path) -> list[tuple[str, str]]:
    """The renames (staging path, dataset path) that publish a finalized staged episode, in commit order.

    Files of the staging folder that are hard links of the dataset's own files, and lerobot's temporary
    ``images/`` frames, are left out.

    Raises:
        ContractError: a new data/video/episode file would overwrite an existing one (never expected: resume opens
            new files), or the staged dataset has no ``meta/info.json``.
    """
    if not (staging / INFO).is_file():
        raise ContractError(f"{staging}: no meta/info.json; the staged episode was not finalized")
    moves: list[tuple[int, str]] = []
    for path in staging.rglob("*"):
        relative = path.relative_to(staging).as_posix()
        if not path.is_file() or relative.startswith("images/"):
            continue
        target = root / relative
        if target.exists() and (os.path.samefile(path, target) or filecmp.cmp(path, target, shallow=False)):
            continue  # a hard link (or copy) of a committed file
        group = next((i for i, prefix in enumerate(COMMIT_ORDER) if relative.startswith(prefix)), len(COMMIT_ORDER) - 1)
        immutable = relative.startswith(("videos/", "data/", "meta/episodes/"))
        if immutable and target.exists():
            raise ContractError(f"committing {staging} would overwrite {target}; the dataset changed during recording")
        moves.append((group if relative != INFO.as_posix() else len(COMMIT_ORDER), relative))
    moves.sort()
    return [(str(staging / relative), str(root / relative)) for _, relative in moves]


def commit(root: Path, staging: Path) -> int:
    """Publish the finalized staged episode into ``root`` (see the module docstring). Returns files renamed."""
    moves = plan_commit(root, staging)
    journal = work_dir(root) / JOURNAL
    temporary = journal.with_suffix(".tmp")
    temporary.write_text(json.dumps({"moves": moves}, indent=1))
    os.replace(temporary, journal)  # the commit is decided from here on
    count = _apply(moves)
    journal.unlink()
    shutil.rmtree(staging, ignore_errors=True)
    return count


def _apply(moves: list[tuple[str, str]]) -> int:
    count = 0
    for source, target in moves:
        if not os.path.exists(source):
            continue  # renamed before an interruption
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        count += 1
    return count


def recover(root: Path) -> Recovery:
    """Finish an interrupted commit and drop an unfinished staged episode; safe to call at any time."""
    journal = work_dir(root) / JOURNAL
    rolled = 0
    if journal.is_file():
        try:
            moves = [tuple(move) for move in json.loads(journal.read_text())["moves"]]
        except (ValueError, KeyError) as error:
            raise ContractError(f"{journal}: unreadable commit journal ({error}); inspect it by hand") from error
        rolled = _apply([(str(source), str(target)) for source, target in moves])
        journal.unlink()
    journal.with_suffix(".tmp").unlink(missing_ok=True)  # a journal never completed: nothing was renamed
    for leftover in (root / "meta").glob("*.tmp"):
        leftover.unlink()  # a whole-file replacement (tiers_episodes.jsonl) killed before its rename
    staging = staging_dir(root)
    discarded = staging.exists()
    if discarded:
        shutil.rmtree(staging)
    return Recovery(rolled_forward=rolled, discarded_staging=discarded)


def remove_work_dir(root: Path) -> None:
    """Delete ``root/.tiers`` when nothing is pending in it (after a clean close)."""
    folder = work_dir(root)
    if folder.is_dir() and not any(folder.rglob("*.json")) and not staging_dir(root).exists():
        shutil.rmtree(folder)
