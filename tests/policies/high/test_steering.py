"""SteerVLA-style steering against a real local chat server, with the kitchen's rendered camera images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from tiers.apps.scripted_server import ScriptedChatServer
from tiers.core.features import CommandStyle
from tiers.core.language import LanguageCommand
from tiers.core.observation import Observation
from tiers.core.protocols import HighLevelPlanner
from tiers.policies.high.steering import SteeringConfig, SteeringPlanner
from tiers.services.chat import OpenAIChatBackend, OpenAIChatConfig, decode_data_url, message_images


def _planner(server: ScriptedChatServer, **config: object) -> SteeringPlanner:
    backend = OpenAIChatBackend(OpenAIChatConfig(base_url=server.base_url, model="vlm", backoff_s=0.01))
    return SteeringPlanner(backend, SteeringConfig.from_dict(config))


def test_steers_at_the_configured_rate_with_the_current_images(reset_kitchen: Callable[..., Observation]) -> None:
    observation = reset_kitchen()
    replies = [
        "subtask: pick up the apple\nmotion: move arm forward",
        "subtask: pick up the apple\nmotion: move arm down\nmotion: dance wildly",
        "done",
    ]
    with ScriptedChatServer(replies) as server:
        planner = _planner(server, period_s=1.0, cameras=["front", "wrist"])
        assert isinstance(planner, HighLevelPlanner)
        planner.reset("put the apple in the bowl")
        start = observation.timestamp
        given = [planner.next_command(replace(observation, timestamp=start + 0.05 * k)) for k in range(21)]
        assert len(server.requests) == 2  # t = 0 and t = 1.0 s, not at the 19 ticks in between
        final = planner.next_command(replace(observation, timestamp=start + 2.0))
    assert final is None and planner.done
    first, second = given[0], given[20]
    assert first is not None and second is not None
    assert all(command is first for command in given[:20])  # the same command until the next query
    assert (first.text, first.style) == ("move arm forward", CommandStyle.MOTION)
    assert second.text == "move arm down" and second.replaces is first
    assert planner.subtask is not None and planner.subtask.text == "pick up the apple"
    assert planner.subtask.style is CommandStyle.SUBTASK and planner.subtask.replaces is None  # unchanged subtask
    assert planner.rejected == ["motion: dance wildly"]
    for request in server.requests:
        urls = message_images(request["messages"][-1])
        assert len(urls) == 2
        np.testing.assert_array_equal(decode_data_url(urls[0]), observation.images["front"])
        np.testing.assert_array_equal(decode_data_url(urls[1]), observation.images["wrist"])
    second_prompt = request["messages"][-1]["content"][0]["text"]
    assert "Instruction: put the apple in the bowl" in second_prompt
    assert (
        "Your previous steering, oldest first: subtask: pick up the apple / motion: move arm forward"
        in (server.requests[1]["messages"][-1]["content"][0]["text"])
    )


def test_a_correction_forces_a_query_and_is_named_in_provenance(reset_kitchen: Callable[..., Observation]) -> None:
    observation = reset_kitchen()
    replies = ["subtask: pick up the apple", "subtask: pick up the can\nsubtask: grab it somehow"]
    with ScriptedChatServer(replies) as server:
        planner = _planner(server, period_s=5.0, cameras=["front"], levels=["subtask"])
        planner.reset("put the can in the bowl")
        first = planner.next_command(observation)
        correction = LanguageCommand("not the apple, the can", CommandStyle.CORRECTION, "human_live", 0.1)
        planner.handle_correction(correction)
        second = planner.next_command(replace(observation, timestamp=observation.timestamp + 0.1))
    assert first is not None and first.text == "pick up the apple"
    assert second is not None and second.text == "pick up the can" and second.replaces is correction
    assert (
        "The person watching said: not the apple, the can" in server.requests[1]["messages"][-1]["content"][0]["text"]
    )
    assert planner.rejected == ["subtask: grab it somehow"]
