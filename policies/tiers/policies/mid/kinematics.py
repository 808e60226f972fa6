"""Differentiable forward kinematics of a serial arm in torch, read from a compiled MuJoCo model.

The chain is the bodies from the robot's base to the body holding the tool site; every body contributes its
fixed offset (``body_pos``, ``body_quat``) and, for bodies with a hinge joint, a rotation by the joint value
about ``jnt_axis`` through ``jnt_pos`` (MuJoCo's own convention), so the result matches ``mj_kinematics``
of the same model exactly. Frames: the model's world frame (the robot base in the kitchen), metres.

    fk = ArmFK.from_model(model, joint_names=spec.joint_names, site_name=spec.ee_frame)
    position, rotation = fk(q)            # q (..., J) rad -> (..., 3) m, (..., 3, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
import torch
from numpy.typing import NDArray


def _quat_to_matrix(quaternion: NDArray[np.float64]) -> NDArray[np.float64]:
    matrix = np.empty(9)
    mujoco.mju_quat2Mat(matrix, np.asarray(quaternion, dtype=np.float64))
    return matrix.reshape(3, 3)


@dataclass(frozen=True)
class _Link:
    offset: NDArray[np.float64]  # (3,) body position in its parent, m
    rotation: NDArray[np.float64]  # (3, 3) body orientation in its parent
    joint: int  # index into q of this body's hinge, -1 for a fixed body
    axis: NDArray[np.float64]  # (3,) unit hinge axis in the body frame
    anchor: NDArray[np.float64]  # (3,) hinge anchor in the body frame, m
    name: str


class ArmFK(torch.nn.Module):
    """Forward kinematics of a tool site over a chain of hinge joints, differentiable in torch.

    Buffers follow ``.to(device, dtype)``; the default dtype is float32 (the samplers' dtype).
    """

    offsets: torch.Tensor  # (L, 3) body positions in their parents, m
    rotations: torch.Tensor  # (L, 3, 3) body orientations in their parents
    axes: torch.Tensor  # (L, 3) hinge axes in the body frames
    anchors: torch.Tensor  # (L, 3) hinge anchors in the body frames, m
    crosses: torch.Tensor  # (L, 3, 3) cross-product matrices of the axes
    outers: torch.Tensor  # (L, 3, 3) outer products of the axes with themselves
    site_offset: torch.Tensor  # (3,) tool site in the last body, m
    site_rotation: torch.Tensor  # (3, 3)

    def __init__(self, links: list[_Link], site_offset: NDArray[np.float64], site_rotation: NDArray[np.float64]):
        super().__init__()
        self._names = [link.name for link in links]
        self._joints = [link.joint for link in links]
        self.register_buffer("offsets", torch.tensor(np.stack([link.offset for link in links]), dtype=torch.float32))
        self.register_buffer(
            "rotations", torch.tensor(np.stack([link.rotation for link in links]), dtype=torch.float32)
        )
        self.register_buffer("axes", torch.tensor(np.stack([link.axis for link in links]), dtype=torch.float32))
        self.register_buffer("anchors", torch.tensor(np.stack([link.anchor for link in links]), dtype=torch.float32))
        axes = np.stack([link.axis for link in links])  # (L, 3)
        crosses = np.zeros((len(links), 3, 3))  # (L, 3, 3) [a]x, the cross-product matrix of each axis
        crosses[:, 0, 1], crosses[:, 0, 2], crosses[:, 1, 2] = -axes[:, 2], axes[:, 1], -axes[:, 0]
        crosses -= np.transpose(crosses, (0, 2, 1))
        self.register_buffer("crosses", torch.tensor(crosses, dtype=torch.float32))
        self.register_buffer("outers", torch.tensor(np.einsum("li,lj->lij", axes, axes), dtype=torch.float32))
        self._anchored = [bool(np.any(link.anchor != 0.0)) for link in links]
        self.register_buffer("site_offset", torch.tensor(site_offset, dtype=torch.float32))
        self.register_buffer("site_rotation", torch.tensor(site_rotation, dtype=torch.float32))
        self.dof = sum(1 for joint in self._joints if joint >= 0)

    @classmethod
    def from_model(cls, model: mujoco.MjModel, *, joint_names: list[str], site_name: str) -> ArmFK:
        """Build the chain from ``model``'s root body down to the body holding ``site_name``.

        Args:
            model: compiled MuJoCo model (read only).
            joint_names: the J arm joints, in the order of the ``q`` vectors this FK takes.
            site_name: the tool site, e.g. ``"panda_hand_tcp"``.

        Raises:
            ValueError: unknown names, a joint on the chain that is not a hinge, or an arm joint off the chain.
        """
        site = int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site_name))
        if site < 0:
            raise ValueError(f"site {site_name!r} is not in the model")
        order = {}
        for index, name in enumerate(joint_names):
            joint = int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name))
            if joint < 0:
                raise ValueError(f"joint {name!r} is not in the model")
            if model.jnt_type[joint] != mujoco.mjtJoint.mjJNT_HINGE:
                raise ValueError(f"joint {name!r} is not a hinge; ArmFK handles hinge chains only")
            order[joint] = index
        chain = []
        body = int(model.site_bodyid[site])
        while body > 0:  # body 0 is the world
            chain.append(body)
            body = int(model.body_parentid[body])
        links = []
        seen = set()
        for body in reversed(chain):
            joint_index, axis, anchor = -1, np.array([0.0, 0.0, 1.0]), np.zeros(3)
            count = int(model.body_jntnum[body])
            if count > 1:
                raise ValueError(f"body {model.body(body).name!r} has {count} joints; ArmFK expects at most one")
            if count == 1:
                joint = int(model.body_jntadr[body])
                if joint not in order:
                    raise ValueError(
                        f"joint {model.joint(joint).name!r} on the chain to {site_name!r} is not among {joint_names}"
                    )
                joint_index, axis, anchor = order[joint], model.jnt_axis[joint].copy(), model.jnt_pos[joint].copy()
                seen.add(joint)
            links.append(
                _Link(
                    offset=model.body_pos[body].copy(),
                    rotation=_quat_to_matrix(model.body_quat[body]),
                    joint=joint_index,
                    axis=axis / np.linalg.norm(axis),
                    anchor=anchor,
                    name=model.body(body).name,
                )
            )
        missing = [name for joint, name in zip(order, joint_names, strict=True) if joint not in seen]
        if missing:
            raise ValueError(f"joints {missing} are not on the chain from the root to site {site_name!r}")
        return cls(links, model.site_pos[site].copy(), _quat_to_matrix(model.site_quat[site]))

    @property
    def link_names(self) -> list[str]:
        """Names of the chain's bodies, root first (the frames :meth:`link_frames` returns)."""
        return list(self._names)

    def link_frames(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World frames of every body on the chain.

        Args:
            q: (..., J) joint values, rad.

        Returns:
            positions (..., L, 3) m and rotations (..., L, 3, 3), root first.
        """
        positions, rotations = self._walk(q, keep_frames=True)
        return torch.stack(positions, dim=-2), torch.stack(rotations, dim=-3)

    def forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tool site pose: q (..., J) rad -> position (..., 3) m, rotation matrix (..., 3, 3), world frame."""
        positions, rotations = self._walk(q, keep_frames=False)
        position, rotation = positions[-1], rotations[-1]
        site_offset, site_rotation = self.site_offset.to(q.dtype), self.site_rotation.to(q.dtype)
        return position + rotation @ site_offset, rotation @ site_rotation

    def _walk(self, q: torch.Tensor, *, keep_frames: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Body frames down the chain: every one with ``keep_frames``, else the last one only.

        Runs on every reward gradient of a steered sampler step, on small batches where the number of torch
        ops, not their size, sets the cost: the per-link constants of the Rodrigues formula are precomputed,
        hinge anchors at the body origin (all of the Panda's) skip their shift, and no frame is kept that the
        caller does not need.
        """
        if q.shape[-1] != self.dof:
            raise ValueError(f"ArmFK takes (..., {self.dof}) joint values, got shape {tuple(q.shape)}")
        batch = q.shape[:-1]
        position = q.new_zeros((*batch, 3))
        rotation = torch.eye(3, dtype=q.dtype, device=q.device).expand(*batch, 3, 3)
        positions, rotations = [], []
        offsets, fixed = self.offsets.to(q.dtype), self.rotations.to(q.dtype)
        crosses, outers, anchors = self.crosses.to(q.dtype), self.outers.to(q.dtype), self.anchors.to(q.dtype)
        eye = torch.eye(3, dtype=q.dtype, device=q.device)
        for index, joint in enumerate(self._joints):
            position = position + rotation @ offsets[index]
            rotation = rotation @ fixed[index]
            if joint >= 0:
                angle = q[..., joint, None, None]
                cosine = torch.cos(angle)
                # Rodrigues: R = I cos + [a]x sin + a a^T (1 - cos), with [a]x and a a^T constant per link
                turn = cosine * (eye - outers[index]) + torch.sin(angle) * crosses[index] + outers[index]
                if self._anchored[index]:  # rotating about an anchor p: the origin moves by (I - R) p
                    shift = anchors[index] - turn @ anchors[index]
                    position = position + rotation @ shift
                rotation = rotation @ turn
            if keep_frames or index == len(self._joints) - 1:
                positions.append(position)
                rotations.append(rotation)
        return positions, rotations


def rotation_to_quaternion(rotation: NDArray[np.float64]) -> NDArray[np.float64]:
    """(3, 3) rotation -> (4,) wxyz quaternion (MuJoCo's conversion)."""
    quaternion = np.empty(4)
    mujoco.mju_mat2Quat(quaternion, np.asarray(rotation, dtype=np.float64).ravel())
    return quaternion
