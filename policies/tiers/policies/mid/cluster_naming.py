"""Naming anonymous clusters by object class: the mask-free path's stand-in for an object detector.

Without simulator masks the mid tier's cloud (:meth:`~tiers.policies.mid.perception.PointCloudBuilder.cluster`:
support plane removed by RANSAC, the rest clustered by DBSCAN) has anonymous segments ``cluster_<k>``, but a
subtask names objects by class ("pick up the apple"), and object colours are drawn per episode, so the colour
matching of :func:`~tiers.policies.mid.perception.name_clusters` has nothing to go on unless the instruction
says the colour. :class:`ClusterNamer` names the clusters from what a real robot could know:

1. **Merging**: clusters of one colour whose footprints touch are one object (a bowl's or a basket's thin
   walls split into several clusters; DBSCAN cannot join them across the removed base).
2. **Class geometry priors** (:data:`CLASS_PRIORS`, from the object models in the kitchen's ``scene.xml``): the
   height above the support, the footprint's long and short extents (principal axes of the points in the
   horizontal plane) and the top's flatness (the share of points within ``flat_band`` of the top: a sphere or a
   capsule has almost none, a can's or a box's lid many). A can is a tall cylinder, a plate a wide flat disc, a
   banana long, thin and low. Extents seen from a partial view are short, so a shortfall costs less than an
   excess.
3. **Colour words of the instruction** (``Observation.instruction``, e.g. "the red apple"): the named class
   must have that colour (a cost on the distance from the palette's RGB).
4. **Consistency with earlier frames**: a class keeps the mean colour it was seen with (one episode,
   :meth:`ClusterNamer.reset`); a cluster of another colour costs more (objects do not change colour, and every
   object of a kitchen episode has its own colour).
5. **Assignment**: every class at most once, every cluster at most one class (Hungarian assignment over the
   summed costs); a cluster whose assignment costs more than ``max_cost`` (fixture parts, fragments) becomes
   background, as fixtures are with masks (the drawer's handle is measured from background points).
6. **The object in the hand**: the robot's self-filter removes a held object's points with the hand's (a
   cluster has no label to keep them by). When the mid tier plans a pick it attaches the object's points to
   the planned grasp pose (:meth:`ClusterNamer.attach`, as a motion planner attaches a grasped collision
   object); while the fingers are closed on something (neither shut nor wide open), those points follow the
   TCP and stand in for the object.

This is a stand-in for a detector: on a real robot an open-vocabulary detector or segmenter (boxes or masks
per class, lifted to the cloud) replaces steps 2-5, and the VLM-keypoint route
(:mod:`~tiers.policies.mid.vlm_keypoints`: a vision-language model points at the object in the RGB image,
:func:`~tiers.policies.mid.vlm_keypoints.name_cluster_at` names the cluster under that pixel; tested through the
scripted chat server) is the other way to do it. The priors know the kitchen's nine object classes only.

Frames and units: base frame, metres; colours RGB in [0, 1].
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from tiers.commands.palette import PALETTE
from tiers.commands.vocabulary import OBJECTS
from tiers.core.config import Config
from tiers.core.observation import Observation
from tiers.policies.mid.perception import BACKGROUND, PointCloudBuilder, SceneCloud


@dataclass(frozen=True)
class ClassPrior:
    """What an object class looks like to the cameras (m).

    Attributes:
        height: top above the support.
        long: footprint's long extent.
        short: footprint's short extent.
        flat: share of its points within ``flat_band`` of its top (round tops near 0, lids and rims higher).
    """

    height: float
    long: float
    short: float
    flat: float


# From the kitchen's object models (sim/tiers/sim/assets/kitchen/scene.xml), the extents and flatness as the
# kitchen's two depth cameras see them (front and top, 320x240; partial views are a little short).
CLASS_PRIORS: dict[str, ClassPrior] = {
    "cup": ClassPrior(0.090, 0.070, 0.057, 0.75),  # cylinder r 3 cm, 9 cm tall, flat top, a handle on one side
    "bowl": ClassPrior(0.055, 0.125, 0.110, 0.20),  # 13 cm across, thin walls 5.5 cm high
    "plate": ClassPrior(0.031, 0.157, 0.150, 0.10),  # 16 cm disc, a rim 3.1 cm high
    "apple": ClassPrior(0.080, 0.064, 0.058, 0.03),  # sphere r 3.5 cm and a stem: round top
    "banana": ClassPrior(0.034, 0.155, 0.056, 0.67),  # three capsules r 1.7 cm, 16 cm long, curved, low
    "sponge": ClassPrior(0.033, 0.091, 0.062, 0.85),  # 9 x 6 x 3.3 cm block, flat top
    "can": ClassPrior(0.121, 0.063, 0.060, 0.70),  # cylinder r 3.3 cm, 12 cm tall, flat lid
    "box": ClassPrior(0.100, 0.061, 0.051, 0.75),  # 6 x 5 x 10 cm block, flat top
    "basket": ClassPrior(0.126, 0.160, 0.150, 0.06),  # 14 x 11 cm, 7 cm walls, a carrying handle over it
}


@dataclass
class ClusterNamingConfig(Config):
    """How anonymous clusters get class names (mask-free perception)."""

    enabled: bool = True  # name clusters (False: they stay ``cluster_<k>``)
    merge_chroma: float = 0.06  # chromaticity (rgb / sum) distance under which two touching clusters are one object
    merge_brightness: float = 1.6  # ... and brightness (sum) ratio under which (shading changes brightness only)
    merge_gap: float = 0.04  # m, horizontal gap between footprints that still counts as touching
    max_extent: float = 0.22  # m, clusters (merged or not) longer than this are fixtures, never named
    flat_band: float = 0.006  # m, a point this close to its cluster's top belongs to the top
    height_sigma: float = 0.005  # m, spread of the height about the prior
    extent_over: float = 0.015  # m, spread of an extent above the prior
    extent_under: float = 0.03  # m, spread of an extent below the prior (partial views are short)
    flat_sigma: float = 0.12  # spread of the top's flatness
    color_sigma: float = 0.12  # RGB distance scale of the instruction's colour words and of the remembered colours
    max_cost: float = 12.0  # a cluster's assignment costing more stays anonymous
    # m, points of a visible cluster this close to the attached (held) object's points are that object
    attach_radius: float = 0.015
    empty_grip: float = 0.004  # m, fingers at or below this opening closed on nothing
    open_margin: float = 0.004  # m, fingers within this of the widest opening are open (nothing held)


@dataclass(frozen=True)
class ClusterFeatures:
    """Geometry and colour of one (merged) cluster."""

    ids: tuple[int, ...]
    height: float
    long: float
    short: float
    flat: float
    color: NDArray[np.float64]
    count: int


@dataclass
class _Attached:
    """An object's points fixed to the TCP at the planned grasp."""

    name: str
    points: NDArray[np.float64]  # (M, 3) in the grasp TCP frame
    colors: NDArray[np.float64]


@dataclass
class ClusterNamer:
    """Anonymous clusters -> class names (see the module docstring); one episode of memory (:meth:`reset`)."""

    config: ClusterNamingConfig = field(default_factory=ClusterNamingConfig)
    max_opening: float = 0.08  # m, the gripper's widest opening
    colors: dict[str, NDArray[np.float64]] = field(default_factory=dict)  # class -> remembered mean colour
    attached: _Attached | None = None

    def reset(self) -> None:
        """Forget the remembered colours and the held object (a new episode)."""
        self.colors.clear()
        self.attached = None

    def attach(
        self, name: str, points: NDArray[np.float64], colors: NDArray[np.float64], grasp: NDArray[np.float64]
    ) -> None:
        """Fix ``name``'s points (M, 3, base frame) and colours to the TCP pose ``grasp`` (7,: xyz + wxyz) the
        pick plans to close the fingers at; they follow the TCP while the fingers hold something."""
        if len(points) == 0:
            return
        rotation, origin = _pose(grasp)
        self.attached = _Attached(name, (points - origin) @ rotation, colors.copy())

    def name(self, cloud: SceneCloud, observation: Observation) -> SceneCloud:
        """``cloud`` (labelled by ``PointCloudBuilder.cluster``) with its clusters named by class where they can be."""
        if not self.config.enabled:
            return cloud
        cloud = self._with_held(cloud, observation)
        held = self.attached.name if self._holding(observation) and self.attached is not None else None
        features = [f for f in self.features(cloud) if _HELD_ID not in f.ids]
        classes = [name for name in CLASS_PRIORS if name != held]
        words = instruction_colors(observation.instruction)
        names = {i: value for i, value in cloud.names.items() if value == held}
        labels = cloud.labels.copy()
        if features and classes:
            costs = np.array([[self.cost(f, name, words.get(name)) for name in classes] for f in features])
            # one "no class" column per cluster at max_cost: a cluster like no class is left out, not forced in
            padded = np.hstack([costs, np.full((len(features), len(features)), self.config.max_cost)])
            rows, cols = linear_sum_assignment(padded)
            for row, col in zip(rows, cols, strict=True):
                if col >= len(classes):
                    continue
                feature, name = features[row], classes[col]
                label = feature.ids[0]
                labels[np.isin(labels, feature.ids)] = label
                names[label] = name
                remembered = self.colors.get(name)
                self.colors[name] = feature.color if remembered is None else 0.5 * (remembered + feature.color)
        # the rest are fixtures or fragments: background, as with masks (the drawer's handle is measured there)
        labels[~np.isin(labels, list(names))] = BACKGROUND
        return SceneCloud(cloud.points, cloud.colors, labels, names, cloud.source, cloud.support_height, cloud.frame)

    def features(self, cloud: SceneCloud) -> list[ClusterFeatures]:
        """The clusters of ``cloud``, those of one colour that touch merged, without the fixture-sized ones."""
        config = self.config
        ids = sorted(cloud.names)
        members = {i: np.flatnonzero(cloud.labels == i) for i in ids}
        ids = [i for i in ids if len(members[i])]
        color = {i: cloud.colors[members[i]].mean(axis=0) for i in ids}
        low = {i: cloud.points[members[i], :2].min(axis=0) for i in ids}
        high = {i: cloud.points[members[i], :2].max(axis=0) for i in ids}
        parent = {i: i for i in ids}

        def root(i: int) -> int:
            while parent[i] != i:
                i = parent[i]
            return i

        for index, i in enumerate(ids):
            for j in ids[index + 1 :]:
                gap = np.maximum(np.maximum(low[i] - high[j], low[j] - high[i]), 0.0)
                span = np.maximum(high[i], high[j]) - np.minimum(low[i], low[j])
                if (
                    _same_color(color[i], color[j], config.merge_chroma, config.merge_brightness)
                    and float(np.linalg.norm(gap)) <= config.merge_gap
                    and float(span.max()) <= config.max_extent
                ):
                    parent[root(j)] = root(i)
        groups: dict[int, list[int]] = {}
        for i in ids:
            groups.setdefault(root(i), []).append(i)
        out: list[ClusterFeatures] = []
        for group in groups.values():
            rows = np.concatenate([members[i] for i in group])
            points = cloud.points[rows]
            xy = points[:, :2] - points[:, :2].mean(axis=0)
            axes = np.linalg.eigh(xy.T @ xy)[1] if len(xy) > 2 else np.eye(2)
            projected = xy @ axes
            extents = np.sort(projected.max(axis=0) - projected.min(axis=0))[::-1]
            if extents[0] > config.max_extent:
                continue
            top = float(points[:, 2].max())
            flat = float(np.mean(points[:, 2] >= top - config.flat_band))
            out.append(
                ClusterFeatures(
                    tuple(sorted(group)), top - cloud.support_height, float(extents[0]), float(extents[1]), flat,
                    cloud.colors[rows].mean(axis=0), len(rows),
                )
            )  # fmt: skip
        return out

    def cost(self, feature: ClusterFeatures, name: str, word: str | None = None) -> float:
        """How unlike class ``name`` the cluster is (0: exactly its prior), with the colour terms."""
        config = self.config
        prior = CLASS_PRIORS[name]

        def extent(seen: float, expected: float) -> float:
            sigma = config.extent_over if seen > expected else config.extent_under
            return ((seen - expected) / sigma) ** 2

        total = ((feature.height - prior.height) / config.height_sigma) ** 2
        total += extent(feature.long, prior.long) + extent(feature.short, prior.short)
        total += ((feature.flat - prior.flat) / config.flat_sigma) ** 2
        if word is not None:
            rgb = np.asarray(PALETTE[word][:3])
            total += (float(np.linalg.norm(feature.color - rgb)) / config.color_sigma) ** 2
        remembered = self.colors.get(name)
        if remembered is not None:
            total += (float(np.linalg.norm(feature.color - remembered)) / config.color_sigma) ** 2
        return float(total)

    def _holding(self, observation: Observation) -> bool:
        opening = float(observation.gripper_opening)
        return self.config.empty_grip < opening < self.max_opening - self.config.open_margin

    def _with_held(self, cloud: SceneCloud, observation: Observation) -> SceneCloud:
        """``cloud`` with the attached object's points at the TCP (label ``_HELD_ID``) while the hand holds it;
        visible fragments of it (near those points) join it."""
        if self.attached is None or not self._holding(observation):
            return cloud
        rotation, origin = _pose(np.asarray(observation.ee_pose, dtype=np.float64))
        points = self.attached.points @ rotation.T + origin
        labels = cloud.labels.copy()
        if len(cloud):
            # a coarse test first: only points in the held object's box can be near it
            low, high = points.min(axis=0) - self.config.attach_radius, points.max(axis=0) + self.config.attach_radius
            candidates = np.flatnonzero(np.all((cloud.points >= low) & (cloud.points <= high), axis=1))
            if len(candidates):
                from scipy.spatial import cKDTree

                distance, _ = cKDTree(points).query(cloud.points[candidates])
                near = candidates[distance <= self.config.attach_radius]
                near = near[cloud.labels[near] != BACKGROUND]
                labels[near] = BACKGROUND  # fragments of the held object: its attached points stand for it
        names = {i: value for i, value in cloud.names.items() if np.any(labels == i)}
        names[_HELD_ID] = self.attached.name
        return SceneCloud(
            np.concatenate([cloud.points, points]), np.concatenate([cloud.colors, self.attached.colors]),
            np.concatenate([labels, np.full(len(points), _HELD_ID, dtype=np.int32)]).astype(np.int32), names,
            cloud.source, cloud.support_height, cloud.frame,
        )  # fmt: skip


_HELD_ID = 10_000  # label of the attached object's points (clusters are numbered from 0)


def segment_without_masks(
    builder: PointCloudBuilder, cloud: SceneCloud, observation: Observation, namer: ClusterNamer | None
) -> SceneCloud:
    """The mask-free path of an unlabelled cloud (``builder.build`` without masks): support plane + DBSCAN
    clusters (``builder.cluster``), named by class by ``namer`` (None: left ``cluster_<k>``)."""
    clustered = builder.cluster(cloud)
    return namer.name(clustered, observation) if namer is not None else clustered


def instruction_colors(text: str) -> dict[str, str]:
    """Object class -> the colour word the instruction gives it ("put the red apple ..." -> {"apple": "red"})."""
    found: dict[str, str] = {}
    lowered = text.lower()
    colors = "|".join(PALETTE)
    for name, info in OBJECTS.items():
        nouns = sorted({*info.nouns.train, *info.nouns.held_out}, key=len, reverse=True)
        pattern = rf"\b({colors})\s+(?:{'|'.join(re.escape(noun) for noun in nouns)})\b"
        match = re.search(pattern, lowered)
        if match:
            found[name.value] = match.group(1)
    return found


def _same_color(a: NDArray[np.float64], b: NDArray[np.float64], chroma: float, brightness: float) -> bool:
    """Whether two mean colours (3,) are one paint under different shading."""
    sum_a, sum_b = max(float(a.sum()), 1e-6), max(float(b.sum()), 1e-6)
    ratio = max(sum_a, sum_b) / min(sum_a, sum_b)
    return float(np.linalg.norm(a / sum_a - b / sum_b)) < chroma and ratio < brightness


def _pose(pose: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(rotation (3, 3), origin (3,)) of a pose (7,): xyz m + quaternion wxyz."""
    w, x, y, z = pose[3:7] / np.linalg.norm(pose[3:7])
    rotation = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
    return rotation, np.asarray(pose[:3], dtype=np.float64)
