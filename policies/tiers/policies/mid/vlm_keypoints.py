"""An optional VLM keypoint query through the shared chat backend: "where is the <object>?" -> 3D point.

A vision-language model served behind any OpenAI-compatible endpoint (the shared
:class:`~tiers.services.chat.ChatBackend`) is shown one camera's RGB image and asked for the pixel of
a named object part as JSON; the pixel is back-projected with that camera's depth and pinhole model into the
base frame. On a real robot (no segmentation masks) :func:`name_cluster_at` then gives the object's name to
the DBSCAN cluster under that point, so the affordance detector can use the cluster as the object's segment::

    query = VLMKeypointQuery(OpenAIChatBackend(OpenAIChatConfig.from_env()), camera="front")
    answer = query.locate(observation, "apple")                 # KeypointAnswer: point (3,) or reason
    cloud = name_cluster_at(builder.cluster(cloud), answer.point, "apple")

Replies are parsed leniently (the first ``{...}`` holding ``u`` and ``v``, pixels or fractions of the image
size); every failure (no JSON, pixel outside the image, no depth there, backend error) is a reason, not a crash.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tiers.core.observation import Observation
from tiers.policies.mid.perception import BACKGROUND, SceneCloud
from tiers.services.chat import BackendError, ChatBackend, system_message, user_message

PROMPT = (
    "The image is {width} x {height} pixels, u to the right from 0 at the left edge, v down from 0 at the top. "
    'Where is {part} of the {target}? Answer with JSON only: {{"u": <int>, "v": <int>}}.'
)
SYSTEM = "You locate objects in robot camera images and answer with pixel coordinates as JSON."


@dataclass(frozen=True)
class KeypointAnswer:
    """A located keypoint, or the reason there is none.

    Attributes:
        point: (3,) m in the base frame, None on failure.
        pixel: (u, v) the model named, None if it named none.
        reason: why there is no point ("" on success).
        reply: the model's raw text.
        latency_s: s the query took (model and back-projection).
    """

    point: NDArray[np.float64] | None
    pixel: tuple[float, float] | None
    reason: str
    reply: str
    latency_s: float

    @property
    def ok(self) -> bool:
        return self.point is not None


class VLMKeypointQuery:
    """Ask a VLM for an object's pixel in one camera, back-project it with that camera's depth."""

    def __init__(self, backend: ChatBackend, *, camera: str = "front", depth_window: int = 3):
        """
        Args:
            backend: the shared chat backend (OpenAI-compatible HTTP or a local model).
            camera: the camera whose RGB image is shown and whose depth back-projects the answer.
            depth_window: half size (pixels) of the window whose median valid depth is used (edges have none).
        """
        self.backend = backend
        self.camera = camera
        self.depth_window = depth_window

    def locate(self, observation: Observation, target: str, part: str = "the middle") -> KeypointAnswer:
        """The base-frame point of ``part`` of ``target`` in ``observation`` (see the module docstring)."""
        started = time.perf_counter()
        if self.camera not in observation.images or self.camera not in observation.depths:
            have = sorted(set(observation.images) & set(observation.depths))
            return KeypointAnswer(
                None, None, f"camera {self.camera!r} has no RGB-D image; RGB-D cameras: {have}", "", 0.0
            )
        image = observation.images[self.camera]
        height, width = image.shape[:2]
        prompt = PROMPT.format(width=width, height=height, part=part, target=target)
        try:
            reply = self.backend.complete([system_message(SYSTEM), user_message(prompt, images=[image])]).text
        except BackendError as error:
            return KeypointAnswer(
                None, None, f"the model could not be asked: {error}", "", time.perf_counter() - started
            )
        pixel = parse_pixel(reply, width, height)
        if pixel is None:
            reason = f"no {{'u', 'v'}} JSON in the reply {reply[:80]!r}"
            return KeypointAnswer(None, None, reason, reply, time.perf_counter() - started)
        u, v = pixel
        if not (0 <= u <= width - 1 and 0 <= v <= height - 1):
            reason = f"pixel ({u:.0f}, {v:.0f}) is outside the {width}x{height} image"
            return KeypointAnswer(None, pixel, reason, reply, time.perf_counter() - started)
        depth = observation.depths[self.camera]
        r = self.depth_window
        window = depth[max(0, int(v) - r) : int(v) + r + 1, max(0, int(u) - r) : int(u) + r + 1]
        valid = window[np.isfinite(window) & (window > 0)]
        if valid.size == 0:
            reason = f"no depth return around pixel ({u:.0f}, {v:.0f})"
            return KeypointAnswer(None, pixel, reason, reply, time.perf_counter() - started)
        camera = observation.cameras[self.camera]
        k = camera.intrinsics
        z = float(np.median(valid))
        optical = np.array([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z])
        point = camera.base_from_camera[:3, :3] @ optical + camera.base_from_camera[:3, 3]
        return KeypointAnswer(point, pixel, "", reply, time.perf_counter() - started)


def parse_pixel(reply: str, width: int, height: int) -> tuple[float, float] | None:
    """(u, v) pixels from the first JSON object with numeric ``u`` and ``v`` in ``reply``; values in [0, 1]
    are read as fractions of the image size. None when there is none."""
    for match in re.finditer(r"\{[^{}]*\}", reply):
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        u, v = data.get("u"), data.get("v")
        if isinstance(u, int | float) and isinstance(v, int | float):
            if 0 <= u <= 1 and 0 <= v <= 1 and isinstance(u, float) and isinstance(v, float):
                return float(u) * (width - 1), float(v) * (height - 1)
            return float(u), float(v)
    return None


def name_cluster_at(
    cloud: SceneCloud, point: NDArray[np.float64], name: str, *, max_distance: float = 0.05
) -> SceneCloud:
    """``cloud`` with the segment nearest to ``point`` (3,) renamed ``name`` (unchanged if none is within
    ``max_distance`` m)."""
    labelled = cloud.labels != BACKGROUND
    if not np.any(labelled):
        return cloud
    distances = np.linalg.norm(cloud.points[labelled] - point, axis=1)
    nearest = int(np.argmin(distances))
    if distances[nearest] > max_distance:
        return cloud
    segment = int(cloud.labels[labelled][nearest])
    names = {index: value for index, value in cloud.names.items() if value != name}
    names[segment] = name
    return SceneCloud(cloud.points, cloud.colors, cloud.labels, names, cloud.source, cloud.support_height)
