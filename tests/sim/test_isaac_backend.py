"""The Isaac Sim backend on a machine without it: the preflight names each missing piece, selecting the
backend fails with that message (API and CLI), and the parts that need no GPU (reading the exported stage,
joint values, bounds, regions, camera models, segmentation ids) agree with MuJoCo."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tiers.core import EmbodimentSpec
from tiers.sim.backends import BACKENDS, check_backend_available, make_backend
from tiers.sim.isaac import geometry
from tiers.sim.isaac.cameras import camera_model, object_ids_of_labels, segment_objects
from tiers.sim.isaac.preflight import (
    EULA_VARIABLE,
    IsaacUnavailableError,
    check_isaac_requirements,
    gpu_has_rt_cores,
)
from tiers.sim.kitchen.layout import OBJECT_NAMES, sample_layout

NO_ISAAC = importlib.util.find_spec("isaacsim") is None
NO_DRIVER = shutil.which("nvidia-smi") is None


def test_isaacsim_is_a_registered_backend() -> None:
    assert "isaacsim" in BACKENDS


@pytest.mark.skipif(not (NO_ISAAC and NO_DRIVER), reason="this machine has isaacsim or an NVIDIA driver")
def test_preflight_names_each_missing_piece_here() -> None:
    missing = check_isaac_requirements(environ={})
    text = "; ".join(missing)
    assert "pip install 'tiers[isaacsim]'" in text
    assert "no NVIDIA driver (nvidia-smi not found" in text
    assert f"set {EULA_VARIABLE}=YES" in text


@pytest.mark.parametrize("value", ["YES", "yes", "Y", "1"])
def test_the_eula_variable_is_read_as_kit_reads_it(value: str) -> None:
    assert not any("EULA" in line for line in check_isaac_requirements(environ={EULA_VARIABLE: value}))


@pytest.mark.skipif(not NO_ISAAC, reason="an installed isaacsim may hold an EULA_ACCEPTED file")
def test_a_missing_eula_is_reported() -> None:
    assert any("EULA" in line for line in check_isaac_requirements(environ={EULA_VARIABLE: "no"}))


@pytest.mark.parametrize(
    ("name", "rtx"),
    [
        ("NVIDIA H100 80GB HBM3", False),
        ("NVIDIA H200", False),
        ("NVIDIA A100-SXM4-80GB", False),
        ("NVIDIA B200", False),
        ("NVIDIA GH200 480GB", False),
        ("Tesla V100-SXM2-32GB", False),
        ("NVIDIA GeForce GTX 1080 Ti", False),
        ("NVIDIA GeForce RTX 4090", True),
        ("NVIDIA RTX A6000", True),
        ("NVIDIA RTX A3000 Laptop GPU", True),
        ("NVIDIA L40S", True),
        ("NVIDIA A10G", True),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", True),
        ("Some Future GPU", True),  # unknown names may try
    ],
)
def test_gpu_classification(name: str, rtx: bool) -> None:
    assert gpu_has_rt_cores(name) is rtx


@pytest.mark.skipif(not check_isaac_requirements(), reason="Isaac Sim can start here")
def test_building_the_backend_fails_with_the_reasons() -> None:
    missing = check_isaac_requirements()
    with pytest.raises(IsaacUnavailableError, match="the Isaac Sim backend cannot start here") as raised:
        make_backend("isaacsim")
    assert list(raised.value.missing) == missing
    with pytest.raises(IsaacUnavailableError):
        check_backend_available("isaacsim")
    check_backend_available("mujoco")


@pytest.mark.skipif(not check_isaac_requirements(), reason="Isaac Sim can start here")
def test_cli_eval_with_isaacsim_exits_with_the_reason(tiers_command: Callable[..., list[str]], tmp_path: Path) -> None:
    command = tiers_command("eval", "--backend", "isaacsim", "--task", "open/drawer/0", "--out", str(tmp_path))
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "tiers eval: error: the Isaac Sim backend cannot start here" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())  # failed before writing anything


# -- the stage, joint values, bounds and cameras: no GPU needed ----------------------------------------------

LAYOUT = sample_layout(7, objects=["apple", "bowl", "cup"], articulations={"drawer": 0.15, "cabinet": 1.0})


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    pytest.importorskip("pxr", reason="reading the stage needs usd-core: pip install 'tiers[usd]'")
    from pxr import Usd

    from tiers.sim.isaac.stage import StageIndex
    from tiers.sim.mujoco.kitchen import MujocoKitchen
    from tiers.sim.usd.export import export_kitchen_stage

    path = export_kitchen_stage(tmp_path_factory.mktemp("isaac") / "kitchen.usda", layout=LAYOUT)
    stage = Usd.Stage.Open(str(path))
    kitchen = MujocoKitchen("panda", segmentation=False)
    kitchen.reset(LAYOUT, render=False)
    yield StageIndex.read(stage, kitchen.embodiment), kitchen
    kitchen.close()


def _body_pose(kitchen: object, path: str) -> geometry.Pose:
    body = kitchen.model.body(path.split("/")[-1]).id  # type: ignore[attr-defined]
    return kitchen.data.xpos[body].copy(), kitchen.data.xquat[body].copy()  # type: ignore[attr-defined]


def test_exported_joint_frames_read_mujocos_joint_values(indexed: tuple[object, object]) -> None:
    """PhysX measures a joint between its two frames: on the exported stage, that is MuJoCo's qpos."""
    index, kitchen = indexed
    state = kitchen.scene_state()  # type: ignore[attr-defined]
    for name, joint in index.fixtures.items():  # type: ignore[attr-defined]
        child = geometry.compose(_body_pose(kitchen, joint.child), joint.local_child)
        assert geometry.joint_value(joint.kind, joint.parent_frame, child) == pytest.approx(
            state.articulations[name].joint_position, abs=1e-6
        )
        pose = geometry.child_pose_at(
            joint.kind, state.articulations[name].joint_position, joint.parent_frame, joint.local_child
        )
        np.testing.assert_allclose(pose[0], _body_pose(kitchen, joint.child)[0], atol=1e-6)


def test_arm_joint_frames_read_the_home_pose(indexed: tuple[object, object], tmp_path: Path) -> None:
    from pxr import Usd, UsdPhysics

    from tiers.sim.isaac.geometry import JointKind
    from tiers.sim.isaac.stage import _gf_quat
    from tiers.sim.usd.export import export_kitchen_stage

    _, kitchen = indexed
    stage = Usd.Stage.Open(str(export_kitchen_stage(tmp_path / "k.usda", layout=LAYOUT)))
    spec = EmbodimentSpec.load("panda")
    for name, home in zip(spec.joint_names, spec.home, strict=True):
        joint = UsdPhysics.Joint(stage.GetPrimAtPath(f"/World/joints/{name}"))
        frames = []
        for relation, position, rotation in (
            (joint.GetBody0Rel(), joint.GetLocalPos0Attr(), joint.GetLocalRot0Attr()),
            (joint.GetBody1Rel(), joint.GetLocalPos1Attr(), joint.GetLocalRot1Attr()),
        ):
            body = _body_pose(kitchen, str(relation.GetTargets()[0]))
            frames.append(geometry.compose(body, (np.array(position.Get(), dtype=float), _gf_quat(rotation.Get()))))
        assert geometry.joint_value(JointKind.REVOLUTE, *frames) == pytest.approx(home, abs=1e-5), name


def test_regions_bounds_and_tool_match_mujoco(indexed: tuple[object, object]) -> None:
    index, kitchen = indexed
    state = kitchen.scene_state()  # type: ignore[attr-defined]

    def site_pose(site: object) -> geometry.Pose:
        if site.body is None:  # type: ignore[attr-defined]
            return site.pose  # type: ignore[attr-defined]
        return geometry.compose(_body_pose(kitchen, site.body), site.pose)  # type: ignore[attr-defined]

    for name, site in index.regions.items():  # type: ignore[attr-defined]
        box = geometry.site_box(site.half_size, site_pose(site))
        np.testing.assert_allclose(box.low, state.regions[name].low, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(box.high, state.regions[name].high, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(site_pose(index.tcp)[0], state.ee_position, atol=1e-6)  # type: ignore[attr-defined]
    for name, expected in state.objects.items():
        bounds = index.object_shapes[name].bounds(_body_pose(kitchen, name))  # type: ignore[attr-defined]
        np.testing.assert_allclose(bounds.low, expected.bounds.low, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(bounds.high, expected.bounds.high, atol=1e-6, err_msg=name)


def test_camera_models_match_mujocos(indexed: tuple[object, object]) -> None:
    index, kitchen = indexed
    expected = kitchen.observe(render=False).cameras  # type: ignore[attr-defined]
    spec = kitchen.embodiment  # type: ignore[attr-defined]
    for camera in spec.cameras:
        mount = index.cameras[camera.name]  # type: ignore[attr-defined]
        pose = mount.pose if mount.body is None else geometry.compose(_body_pose(kitchen, mount.body), mount.pose)
        model = camera_model(camera, pose)
        np.testing.assert_allclose(model.intrinsics, expected[camera.name].intrinsics, atol=1e-9)
        np.testing.assert_allclose(model.base_from_camera, expected[camera.name].base_from_camera, atol=1e-6)


def test_instance_ids_become_object_ids() -> None:
    paths = {name: f"/World/{name}" for name in OBJECT_NAMES}
    labels = {
        "0": "BACKGROUND",
        "1": "/World/apple/apple_body",
        2: "/World/counter/counter_top",
        "3": "/World/cup/cup_trim",
    }
    mapping = object_ids_of_labels(labels, paths)
    assert mapping == {1: OBJECT_NAMES.index("apple"), 3: OBJECT_NAMES.index("cup")}
    ids = np.array([[0, 1], [2, 3]], dtype=np.uint32)
    np.testing.assert_array_equal(
        segment_objects(ids, mapping), [[-1, OBJECT_NAMES.index("apple")], [-1, OBJECT_NAMES.index("cup")]]
    )
