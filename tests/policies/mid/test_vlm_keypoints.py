"""The VLM keypoint query over a real local OpenAI-compatible server (scripted replies), on a rendered kitchen:
back-projection to the object, naming a DBSCAN cluster with it, and every failure as a reason."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from tiers.apps.scripted_server import ScriptedChatServer, ScriptedReply
from tiers.core.embodiment import EmbodimentSpec
from tiers.core.observation import Observation
from tiers.policies.mid.perception import PointCloudBuilder, perception_embodiment
from tiers.policies.mid.vlm_keypoints import VLMKeypointQuery, name_cluster_at, parse_pixel
from tiers.services.chat import OpenAIChatBackend, OpenAIChatConfig
from tiers.sim.kitchen.layout import sample_layout
from tiers.sim.mujoco import MujocoKitchen
from tiers.sim.scene_state import SceneState


@pytest.fixture(scope="module")
def scene() -> Iterator[tuple[Observation, SceneState]]:
    kitchen = MujocoKitchen(perception_embodiment(EmbodimentSpec.load("panda"), width=320, height=240))
    observation = kitchen.reset(sample_layout(4, objects=["apple", "box"], n_distractors=1))
    yield observation, kitchen.scene_state()
    kitchen.close()


def test_a_vlm_pixel_becomes_the_objects_point_and_names_its_cluster(scene: tuple[Observation, SceneState]) -> None:
    observation, state = scene
    apple = state.objects["apple"].bounds
    top = np.array([[*apple.center[:2], apple.high[2] - 0.01]])
    u, v = observation.cameras["front"].project(top)[0]

    def script(body: dict[str, Any]) -> str:  # a stand-in model that knows where the apple is
        return f'Sure. {{"u": {round(u)}, "v": {round(v)}}}'

    with ScriptedChatServer(script) as server:
        backend = OpenAIChatBackend(OpenAIChatConfig(base_url=server.base_url, model="scripted", max_retries=0))
        answer = VLMKeypointQuery(backend, camera="front").locate(observation, "apple")
        request = server.requests[0]
    assert answer.point is not None, answer.reason
    assert np.all(answer.point > apple.low - 0.015) and np.all(answer.point < apple.high + 0.015)
    parts = request["messages"][-1]["content"]
    assert "apple" in parts[0]["text"] and parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    builder = PointCloudBuilder()
    clusters = builder.cluster(builder.build(replace(observation, segmentation={})))
    named = name_cluster_at(clusters, answer.point, "apple")
    points = named.segment("apple")
    assert len(points) > 10
    assert np.linalg.norm(points.mean(axis=0)[:2] - apple.center[:2]) < 0.03


def test_bad_replies_are_reasons(scene: tuple[Observation, SceneState]) -> None:
    observation, _ = scene
    replies: list[str | ScriptedReply] = [
        "I cannot see it.",
        '{"u": 5000, "v": 3}',
        ScriptedReply(status=400, raw='{"error": "bad"}'),
    ]
    with ScriptedChatServer(replies) as server:
        backend = OpenAIChatBackend(OpenAIChatConfig(base_url=server.base_url, model="scripted", max_retries=0))
        query = VLMKeypointQuery(backend)
        reasons = [query.locate(observation, "apple").reason for _ in replies]
    assert "no {'u', 'v'} JSON" in reasons[0]
    assert "outside the 320x240 image" in reasons[1]
    assert "could not be asked" in reasons[2]
    blind = replace(observation, depths={name: np.zeros_like(d) for name, d in observation.depths.items()})
    with ScriptedChatServer(['{"u": 100, "v": 100}']) as server:
        backend = OpenAIChatBackend(OpenAIChatConfig(base_url=server.base_url, model="scripted", max_retries=0))
        assert "no depth return" in VLMKeypointQuery(backend).locate(blind, "apple").reason
    assert "has no RGB-D image" in VLMKeypointQuery(backend, camera="wrist").locate(observation, "apple").reason
    assert parse_pixel('{"u": 0.5, "v": 0.25}', 101, 41) == (50.0, 10.0)
    assert parse_pixel("no json {here}", 10, 10) is None
