"""Rollout videos: RGB frames to an H.264 mp4 that browsers and players open (through PyAV, which lerobot uses)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


def write_video(path: str | Path, frames: Sequence[NDArray[np.uint8]], fps: float) -> Path:
    """Encode (H, W, 3) uint8 RGB frames to ``path`` (mp4, H.264, yuv420p).

    Odd frame sizes are padded by one pixel (yuv420p needs even sizes). Raises ValueError on no frames
    or frames of different shapes, naming the first offending index.
    """
    import av

    if not frames:
        raise ValueError(f"no frames to write to {path}")
    height, width = frames[0].shape[:2]
    for index, frame in enumerate(frames):
        if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame {index} is {frame.shape} {frame.dtype}, expected ({height}, {width}, 3) uint8")
    pad_h, pad_w = height % 2, width % 2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height = width + pad_w, height + pad_h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for frame in frames:
            if pad_h or pad_w:
                frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
