"""What a planner sees through the mid tier: object queries on the mid tier's fused RGB-D point cloud.

The ``code_as_policies`` planner's programs ask ``get_obj_names()``, ``get_obj_pos("cup")``, ... In a hierarchy
they are answered by :class:`CloudObjects` over the cloud the mid tier itself plans from
(:class:`~tiers.policies.mid.perception.PointCloudBuilder`: every depth camera fused in the base frame, the
robot's own points removed, voxel-downsampled, segmented; plane removal + DBSCAN clusters named ``cluster_<k>``
where the cameras give no masks), so the program and the mid tier agree on what is where. It implements the
high tier's :class:`~tiers.policies.high.primitives.ObjectPerception`; this module composes the two tiers, which
never import each other.

Frames and units: base frame, metres.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tiers.core.errors import ConfigError
from tiers.core.observation import Observation
from tiers.policies.high.primitives import SegmentQueries

if TYPE_CHECKING:  # the cloud's module imports torch; this one is imported only by the planner kinds that use it
    from tiers.policies.mid.perception import SceneCloud

MIN_POINTS = 15  # a segment with fewer points (after the voxel grid) is not reported as seen


class CloudObjects(SegmentQueries):
    """:class:`~tiers.policies.high.primitives.ObjectPerception` over one :class:`SceneCloud`."""

    def __init__(self, cloud: SceneCloud) -> None:
        self.cloud = cloud

    def object_names(self) -> list[str]:
        """Segments with at least MIN_POINTS points, sorted by name."""
        return [name for name in self.cloud.segment_names if len(self.cloud.segment(name)) >= MIN_POINTS]

    def visible_points(self, name: str) -> NDArray[np.float64]:
        points: NDArray[np.float64] = self.cloud.segment(name)
        if len(points) < MIN_POINTS:
            raise ValueError(f"the {name} is not in view; in view: {self.object_names()}")
        return points


def mid_tier_perception(mid: Any, planner: str) -> Callable[[Observation], CloudObjects]:
    """observation -> :class:`CloudObjects` on the cloud ``mid``'s own builder makes of it.

    Raises:
        ConfigError: the hierarchy has no mid tier that builds point clouds (naming ``planner``, which needs one).
    """
    builder = getattr(mid, "builder", None)
    if builder is None or not callable(getattr(builder, "build", None)):
        have = "no mid tier" if mid is None else f"mid tier {type(mid).__name__}, which builds no point cloud"
        raise ConfigError(
            f"planner {planner!r} perceives through the mid tier's RGB-D point cloud, but the hierarchy has {have}; "
            "use mid: {kind: keypoint_paths}"
        )

    namer = getattr(mid, "namer", None)

    def perceive(observation: Observation) -> CloudObjects:
        cloud = builder.build(observation)
        if len(cloud) and cloud.source != "masks":
            # real cameras: no masks, so plane removal + DBSCAN, clusters named by class (the mid tier's namer)
            cloud = builder.cluster(cloud)
            if namer is not None:
                cloud = namer.name(cloud, observation)
        return CloudObjects(cloud)

    return perceive
