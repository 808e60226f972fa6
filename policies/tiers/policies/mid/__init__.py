"""tiers.policies.mid: the mid tier, a subtask -> where the end effector should go.

GeneralVLA-style: RGB-D -> point cloud -> keypoint affordances -> collision-aware end-effector path
(:class:`~tiers.core.ee_path.EEPath`); VLS-style: inference-time steering of a frozen diffusion/flow policy
with differentiable rewards (:class:`~tiers.core.guidance.Guidance`) through torch forward kinematics.
See README.md in this folder for the map of modules.
"""
