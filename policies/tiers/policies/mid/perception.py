"""RGB-D -> segmented point cloud in the robot base frame.

Every camera of an :class:`~tiers.core.observation.Observation` that has a depth image is back-projected with
its :class:`~tiers.core.observation.CameraModel` (OpenCV optical frame -> base frame), cropped to the
workspace, stripped of the robot's own points (capsules around the arm's links from forward kinematics), and
voxel-downsampled with Open3D. Points are labelled by object:

* ``SegmentationSource.MASKS`` — the simulator's per-pixel object ids (``Observation.segmentation``): every
  labelled point gets the object's name (``Observation.object_names``).
* ``SegmentationSource.CLUSTERS`` — real cameras (no masks): RANSAC finds the dominant horizontal plane
  (the counter) and removes it, then Open3D's DBSCAN clusters what stands on it. Clusters get no object names
  (``"cluster_<k>"``) but carry their mean colour; :func:`name_clusters` matches them to names by colour
  word and size when the caller knows what to expect (a detector or a VLM would do this on a real robot).

Fixtures (counter, drawer unit, cabinet) are never labelled: they are obstacles, and their articulation
state is read from the cloud by :mod:`tiers.policies.mid.affordances`.

The cameras this needs (two RGB-D views at 320x240, where the kitchen's preset renders one at 128x128) are
:func:`perception_embodiment`'s; the hierarchy adapts the robot with it when a ``keypoint_paths`` mid tier runs.

Frames and units: base frame, metres; colours RGB in [0, 1].

Reproducibility: the RANSAC is :func:`fit_plane_ransac`, drawing from a generator seeded per call with the
seed given to :meth:`PointCloudBuilder.seed` (Open3D's own ``segment_plane`` runs its iterations on OpenMP
threads and differs from run to run even after ``open3d.utility.random.seed``); DBSCAN, the voxel grid and the
back-projection draw nothing, so a cloud is a function of the observation and the seed alone.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from tiers.commands.palette import PALETTE
from tiers.core.config import Config
from tiers.core.embodiment import CameraSpec, EmbodimentSpec
from tiers.core.observation import Observation

if TYPE_CHECKING:
    from tiers.policies.mid.kinematics import ArmFK

BACKGROUND = -1  # label of points that belong to no object


def import_open3d() -> Any:
    """Import Open3D, or fail with a message naming what is missing.

    Open3D's wheel links the system's libusb (Debian's ``libusb-1.0-0``), which a bare machine lacks. The
    ``libusb-package`` wheel (a dependency of tiers) carries the same library: when the first import fails
    for want of it, that copy is loaded under its soname first, so the dynamic loader reuses it for Open3D.
    """
    try:
        import open3d
    except ImportError as error:
        if "libusb" not in str(error) or not _preload_packaged_libusb():
            raise ImportError(
                f"Open3D cannot be imported ({error}); the mid tier's point clouds need it. Install it with "
                "`pip install open3d libusb-package` or, on Debian/Ubuntu, `apt install libusb-1.0-0`."
            ) from error
        import open3d
    return open3d


def _preload_packaged_libusb() -> bool:
    """Load libusb from the ``libusb-package`` wheel with global symbols; False when that wheel is absent."""
    import ctypes

    try:
        import libusb_package
    except ImportError:
        return False
    path = libusb_package.get_library_path()
    if path is None:
        return False
    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    return True


class SegmentationSource(StrEnum):
    """Where the object labels of a cloud came from."""

    MASKS = "masks"  # simulator segmentation masks, labels are object names
    CLUSTERS = "clusters"  # plane removal + DBSCAN, labels are anonymous clusters
    NONE = "none"  # no segmentation asked for


@dataclass
class PerceptionConfig(Config):
    """How observations become point clouds."""

    voxel_size: float = 0.006  # m, Open3D voxel grid of the downsampled cloud
    max_pixels: int = 20000  # per camera: larger images are strided (every n-th row and column) down to this
    max_depth: float = 3.0  # m, depth beyond this is no return
    crop_low: list[float] = field(default_factory=lambda: [-0.3, -0.75, -0.05])  # m, base-frame crop, lower corner
    crop_high: list[float] = field(default_factory=lambda: [0.95, 0.75, 0.9])  # m, base-frame crop, upper corner
    # m, radius of the capsules around the arm's links removed as the robot itself (at 0.1 the forearm's housing
    # left points 10-10.7 cm from the link axis, which blocked the wrist after a leaning cabinet insertion)
    robot_radius: float = 0.11
    hand_radius: float = 0.11  # m, radius of the sphere around the hand body removed as the robot itself
    use_masks: bool = True  # use simulator masks when the observation has them (else cluster)
    plane_distance: float = 0.008  # m, RANSAC inlier distance of the support plane (clustering fallback)
    plane_iterations: int = 200  # RANSAC hypotheses (3-point samples) of the support plane (clustering fallback)
    cluster_eps: float = 0.02  # m, DBSCAN neighbourhood radius (clustering fallback)
    cluster_min_points: int = 12  # DBSCAN core-point neighbours (clustering fallback)
    min_segment_points: int = 15  # segments with fewer points are dropped as noise

    def __post_init__(self) -> None:
        if self.voxel_size <= 0:
            raise ValueError(f"voxel_size must be positive, got {self.voxel_size}")
        if self.plane_iterations < 1:
            raise ValueError(f"plane_iterations must be >= 1, got {self.plane_iterations}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")
        if len(self.crop_low) != 3 or len(self.crop_high) != 3:
            raise ValueError("crop_low and crop_high must have 3 values each")
        if any(low >= high for low, high in zip(self.crop_low, self.crop_high, strict=True)):
            raise ValueError(f"crop_low {self.crop_low} must be below crop_high {self.crop_high}")


def perception_embodiment(
    embodiment: EmbodimentSpec, *, cameras: tuple[str, ...] = ("front", "top"), width: int = 320, height: int = 240
) -> EmbodimentSpec:
    """A copy of ``embodiment`` whose named world cameras render depth at ``width`` x ``height``.

    The kitchen's preset renders 128x128 RGB with depth on the front camera only; the mid tier's perception
    fuses two RGB-D views at a higher resolution (the handle bars are 16 mm thick).
    """
    specs: list[CameraSpec] = []
    for camera in embodiment.cameras:
        if camera.name in cameras:
            camera = replace(camera, width=width, height=height, depth=True)
        specs.append(camera)
    return replace(embodiment, cameras=specs)


@dataclass(frozen=True)
class SceneCloud:
    """A segmented point cloud of the scene.

    Attributes:
        points: (N, 3) float64 m, base frame.
        colors: (N, 3) float64 RGB in [0, 1].
        labels: (N,) int32 segment id per point, ``BACKGROUND`` (-1) for fixtures and unlabelled points.
        names: segment id -> name (an object name for masks, ``"cluster_<k>"`` for clusters).
        source: where the labels came from.
        support_height: m, z of the support surface (the counter) the objects stand on.
        frame: the frame of ``points``.
    """

    points: NDArray[np.float64]
    colors: NDArray[np.float64]
    labels: NDArray[np.int32]
    names: dict[int, str]
    source: SegmentationSource
    support_height: float = 0.0
    frame: str = "base"

    def __len__(self) -> int:
        return len(self.points)

    def segment(self, name: str) -> NDArray[np.float64]:
        """(M, 3) points of the segment called ``name`` (M = 0 when there is none)."""
        ids = [index for index, value in self.names.items() if value == name]
        if not ids:
            return np.zeros((0, 3))
        return self.points[np.isin(self.labels, ids)]

    def without(self, *names: str) -> NDArray[np.float64]:
        """(M, 3) every point but those of the named segments."""
        ids = [index for index, value in self.names.items() if value in names]
        return self.points[~np.isin(self.labels, ids)]

    @property
    def segment_names(self) -> list[str]:
        return sorted(set(self.names.values()))


class PointCloudBuilder:
    """Observation -> :class:`SceneCloud` (see the module docstring)."""

    def __init__(self, config: PerceptionConfig | None = None, *, arm_fk: ArmFK | None = None):
        """
        Args:
            config: perception settings.
            arm_fk: forward kinematics of the arm, to remove the robot's own points; None keeps them.
        """
        self.config = config or PerceptionConfig()
        self._fk = arm_fk
        self._o3d = import_open3d()
        self._seed = 0  # of the RANSAC's generator, fresh in every cluster() call

    def seed(self, seed: int) -> None:
        """Seed the support plane's RANSAC in every later :meth:`cluster` call (an episode's seed)."""
        self._seed = int(seed)

    def build(self, observation: Observation, *, cameras: list[str] | None = None) -> SceneCloud:
        """Fuse the depth cameras of ``observation`` (or the named ones) into one segmented cloud.

        Returns an empty cloud (N = 0) when no camera has depth or every return is invalid; callers report it.
        """
        config = self.config
        names = [name for name in (cameras or list(observation.depths)) if name in observation.depths]
        low, high = np.asarray(config.crop_low), np.asarray(config.crop_high)
        points_list, colors_list, labels_list = [], [], []
        use_masks = config.use_masks and any(name in observation.segmentation for name in names)
        for name in names:
            camera = observation.cameras[name]
            # a fixed pixel budget per camera keeps the cost flat in the resolution (640x480 -> every 4th pixel)
            stride = max(1, int(np.ceil(np.sqrt(camera.width * camera.height / config.max_pixels))))
            depth = observation.depths[name][::stride, ::stride].astype(np.float64)
            valid = np.isfinite(depth) & (depth > 0) & (depth < config.max_depth)
            v, u = np.nonzero(valid)
            z = depth[v, u]
            u, v = u * stride, v * stride
            k = camera.intrinsics
            optical = np.stack([(u - k[0, 2]) / k[0, 0] * z, (v - k[1, 2]) / k[1, 1] * z, z], axis=1)
            base = optical @ camera.base_from_camera[:3, :3].T + camera.base_from_camera[:3, 3]  # (M, 3)
            inside = np.all((base >= low) & (base <= high), axis=1)
            base, u, v = base[inside], u[inside], v[inside]
            points_list.append(base)
            image = observation.images.get(name)
            if image is not None:
                colors_list.append(image[v, u].astype(np.float64) / 255.0)
            else:
                colors_list.append(np.full((len(base), 3), 0.5))
            mask = observation.segmentation.get(name) if use_masks else None
            labels_list.append(mask[v, u].astype(np.int32) if mask is not None else np.full(len(base), BACKGROUND))
        if not points_list or sum(len(p) for p in points_list) == 0:
            return _empty_cloud(SegmentationSource.MASKS if use_masks else SegmentationSource.NONE)
        points, colors = np.concatenate(points_list), np.concatenate(colors_list)
        labels = np.concatenate(labels_list).astype(np.int32)
        points, colors, labels = self._downsample(points, colors, labels)
        # labelled points are objects, even in the hand (a held object must stay in the cloud)
        keep = self._not_robot(points, observation) | (labels != BACKGROUND)
        points, colors, labels = points[keep], colors[keep], labels[keep]
        support = _support_height(points, labels)
        if use_masks:
            present = {int(i) for i in np.unique(labels) if i != BACKGROUND}
            counts = {i: int(np.count_nonzero(labels == i)) for i in present}
            kept = {i for i in present if counts[i] >= config.min_segment_points and i in observation.object_names}
            labels = np.where(np.isin(labels, list(kept)), labels, BACKGROUND).astype(np.int32)
            names_by_id = {i: observation.object_names[i] for i in sorted(kept)}
            return SceneCloud(points, colors, labels, names_by_id, SegmentationSource.MASKS, support)
        return SceneCloud(points, colors, labels, {}, SegmentationSource.NONE, support)

    def cluster(self, cloud: SceneCloud) -> SceneCloud:
        """Label ``cloud`` without masks: remove the support plane (RANSAC), cluster the rest (DBSCAN).

        The dominant plane is accepted as the support only if it is horizontal (normal within 15 deg of +z);
        points at or below it, and clusters with fewer than ``min_segment_points`` points, stay background.
        """
        config = self.config
        o3d = self._o3d
        labels = np.full(len(cloud), BACKGROUND, dtype=np.int32)
        if len(cloud) < max(3, config.cluster_min_points):
            return SceneCloud(cloud.points, cloud.colors, labels, {}, SegmentationSource.CLUSTERS, cloud.support_height)
        support = cloud.support_height
        model, inliers = fit_plane_ransac(
            cloud.points, config.plane_distance, config.plane_iterations, np.random.default_rng(self._seed)
        )
        normal = model[:3]
        if abs(normal[2]) > np.cos(np.deg2rad(15)) * np.linalg.norm(normal):
            # plane a x + b y + c z + d = 0 -> its height under the cloud's centre
            support = float(-model[3] / model[2])
        above = cloud.points[:, 2] > support + 1.5 * config.plane_distance
        above[inliers] = False
        index = np.flatnonzero(above)
        names: dict[int, str] = {}
        if len(index) >= config.cluster_min_points:
            sub = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.points[index]))
            found = np.asarray(sub.cluster_dbscan(config.cluster_eps, config.cluster_min_points))
            next_id = 0
            for cluster in range(int(found.max(initial=-1)) + 1):
                members = index[found == cluster]
                if len(members) < config.min_segment_points:
                    continue
                labels[members] = next_id
                names[next_id] = f"cluster_{next_id}"
                next_id += 1
        return SceneCloud(cloud.points, cloud.colors, labels, names, SegmentationSource.CLUSTERS, support)

    def _not_robot(self, points: NDArray[np.float64], observation: Observation) -> NDArray[np.bool_]:
        """(N,) True for points outside the capsules around the arm's links (robot self-filter)."""
        if self._fk is None or len(points) == 0:
            return np.ones(len(points), dtype=bool)
        with torch.no_grad():
            q = torch.as_tensor(observation.joint_positions, dtype=torch.float64)
            positions, _ = self._fk.link_frames(q)
        joints = positions.numpy()  # (L, 3) link origins, root first
        hand_centre = observation.ee_pose[:3] + 0.5 * (joints[-1] - observation.ee_pose[:3])
        margin = max(self.config.robot_radius, self.config.hand_radius)
        corners = np.vstack([joints, hand_centre])
        # only points inside the arm's bounding box can be the arm: test those against the capsules
        near = np.flatnonzero(
            np.all((points > corners.min(axis=0) - margin) & (points < corners.max(axis=0) + margin), axis=1)
        )
        candidates = points[near]
        robot = np.linalg.norm(candidates - hand_centre, axis=1) <= self.config.hand_radius
        for start, end in itertools.pairwise(joints):
            robot |= _distance_to_segment(candidates, start, end) <= self.config.robot_radius
        keep = np.ones(len(points), dtype=bool)
        keep[near[robot]] = False
        return keep

    def _downsample(
        self, points: NDArray[np.float64], colors: NDArray[np.float64], labels: NDArray[np.int32]
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int32]]:
        """Open3D voxel grid per label, so no voxel mixes two objects."""
        o3d = self._o3d
        out_points, out_colors, out_labels = [], [], []
        for label in np.unique(labels):
            members = labels == label
            pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points[members]))
            pcd.colors = o3d.utility.Vector3dVector(colors[members])
            down = pcd.voxel_down_sample(self.config.voxel_size)
            out_points.append(np.asarray(down.points))
            out_colors.append(np.asarray(down.colors))
            out_labels.append(np.full(len(out_points[-1]), label, dtype=np.int32))
        return np.concatenate(out_points), np.concatenate(out_colors), np.concatenate(out_labels)


def _empty_cloud(source: SegmentationSource) -> SceneCloud:
    return SceneCloud(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, dtype=np.int32), {}, source)


def _support_height(points: NDArray[np.float64], labels: NDArray[np.int32]) -> float:
    """m, the most common height of background points within 10 cm of z = 0 (the counter top), 0 if none."""
    near = points[(labels == BACKGROUND) & (np.abs(points[:, 2]) < 0.1), 2]
    if len(near) < 20:
        return 0.0
    counts, edges = np.histogram(near, bins=np.arange(-0.1, 0.1 + 1e-9, 0.004))
    peak = int(np.argmax(counts))
    return float(np.median(near[(near >= edges[peak]) & (near < edges[peak + 1])]))


def _distance_to_segment(points: NDArray[np.float64], start: NDArray[np.float64], end: NDArray[np.float64]) -> Any:
    """(N,) m from each point to the segment start-end."""
    direction = end - start
    length2 = float(direction @ direction)
    if length2 < 1e-12:
        return np.linalg.norm(points - start, axis=1)
    s = np.clip((points - start) @ direction / length2, 0.0, 1.0)
    return np.linalg.norm(points - (start + s[:, None] * direction), axis=1)


def fit_plane_ransac(
    points: NDArray[np.float64], distance: float, iterations: int, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The plane with the most points within ``distance``, by RANSAC over 3-point samples, refit to its inliers.

    Args:
        points: (N, 3) m, N >= 3.
        distance: m, inlier distance.
        iterations: 3-point hypotheses tried; the first with the most inliers wins (ties: the earliest).
        rng: the only random source (same points, same generator state -> same plane).

    Returns:
        (model (4,) with a x + b y + c z + d = 0 and a unit normal (a, b, c), all zero when no sample spans a
        plane; indices (K,) of the inliers of the refit plane, ascending).
    """
    count = len(points)
    samples = rng.integers(0, count, size=(iterations, 3))
    first = points[samples[:, 0]]
    normals = np.cross(points[samples[:, 1]] - first, points[samples[:, 2]] - first)  # (I, 3)
    lengths = np.linalg.norm(normals, axis=1)
    valid = lengths > 1e-12  # collinear or repeated samples span no plane
    normals = normals[valid] / lengths[valid, None]
    offsets = -np.einsum("ij,ij->i", normals, first[valid])
    best, best_count = -1, -1
    for start in range(0, len(normals), 32):  # (32, N) distances at a time keeps the memory flat in N
        inside = np.abs(points @ normals[start : start + 32].T + offsets[start : start + 32]) <= distance
        counts = inside.sum(axis=0)
        top = int(np.argmax(counts))
        if counts[top] > best_count:
            best, best_count = start + top, int(counts[top])
    if best < 0:  # every sample was degenerate: no plane (a zero model, which no caller takes as horizontal)
        return np.zeros(4), np.zeros(0, dtype=np.int64)
    members = np.flatnonzero(np.abs(points @ normals[best] + offsets[best]) <= distance)
    centre = points[members].mean(axis=0)
    normal = np.linalg.svd(points[members] - centre, full_matrices=False)[2][-1]  # least-squares refit
    offset = -float(normal @ centre)
    inliers = np.flatnonzero(np.abs(points @ normal + offset) <= distance).astype(np.int64)
    return np.append(normal, offset), inliers


def name_clusters(cloud: SceneCloud, expected: dict[str, str | None]) -> SceneCloud:
    """Name anonymous clusters after expected objects by colour (clustering fallback).

    Args:
        cloud: a cloud labelled by :meth:`PointCloudBuilder.cluster`.
        expected: object name -> its colour word (a :data:`~tiers.commands.palette.PALETTE` key) or None.

    Returns:
        the cloud with ``names`` replaced where a cluster was matched; each cluster and each name is used at
        most once, greedily by colour distance (uncoloured names take the largest clusters left).
    """
    clusters = [i for i in cloud.names]
    means = {i: cloud.colors[cloud.labels == i].mean(axis=0) for i in clusters}
    sizes = {i: int(np.count_nonzero(cloud.labels == i)) for i in clusters}
    pairs: list[tuple[float, str, int]] = []
    for name, color in expected.items():
        if color is None:
            continue
        rgb = np.asarray(PALETTE[color][:3])
        pairs.extend((float(np.linalg.norm(means[i] - rgb)), name, i) for i in clusters)
    names = dict(cloud.names)
    used_names: set[str] = set()
    used_clusters: set[int] = set()
    for _, name, cluster in sorted(pairs):
        if name in used_names or cluster in used_clusters:
            continue
        names[cluster] = name
        used_names.add(name)
        used_clusters.add(cluster)
    left = sorted((i for i in clusters if i not in used_clusters), key=lambda i: -sizes[i])
    for name, cluster in zip([n for n in expected if n not in used_names], left, strict=False):
        names[cluster] = name
    return SceneCloud(cloud.points, cloud.colors, cloud.labels, names, cloud.source, cloud.support_height)
