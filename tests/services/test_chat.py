"""Chat backends against a real local HTTP server; the local transformers backend on a tiny model built here."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest

from tiers.apps.scripted_server import ScriptedChatServer, ScriptedReply
from tiers.core.errors import ConfigError
from tiers.services.chat import (
    BackendError,
    OpenAIChatBackend,
    OpenAIChatConfig,
    TransformersChatBackend,
    TransformersChatConfig,
    decode_data_url,
    make_backend,
    message_images,
    system_message,
    user_message,
)


def _backend(server: ScriptedChatServer, **overrides: object) -> OpenAIChatBackend:
    settings = {"base_url": server.base_url, "model": "scripted", "backoff_s": 0.01, **overrides}
    return OpenAIChatBackend(OpenAIChatConfig.from_dict(settings))


def test_text_and_images_travel_as_openai_chat_requests() -> None:
    image = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    with ScriptedChatServer(["pick up the apple"]) as server, _backend(server, api_key="secret") as backend:
        reply = backend.complete([system_message("you plan"), user_message("what next?", images=[image])])
    assert reply.text == "pick up the apple" and reply.model == "scripted" and not reply.cached
    assert reply.usage["completion_tokens"] >= 1
    (request,) = server.requests
    assert request["model"] == "scripted" and request["temperature"] == 0.0
    assert request["messages"][0] == {"role": "system", "content": "you plan"}
    (url,) = message_images(request["messages"][1])
    assert url.startswith("data:image/png;base64,")
    np.testing.assert_array_equal(decode_data_url(url), image)  # lossless, the exact pixels


def test_retries_429_and_5xx_with_backoff_then_succeeds() -> None:
    script = [ScriptedReply(status=503), ScriptedReply(status=429, headers={"Retry-After": "0"}), "done"]
    with ScriptedChatServer(script) as server, _backend(server) as backend:
        assert backend.complete([user_message("hi")]).text == "done"
    assert len(server.requests) == 3 and backend.calls == 3


def test_gives_up_after_the_retry_budget_and_says_why() -> None:
    with (
        ScriptedChatServer(lambda body: ScriptedReply(status=500)) as server,
        _backend(server, max_retries=2) as backend,
        pytest.raises(BackendError, match="gave up after 3 attempts; last error: HTTP 500"),
    ):
        backend.complete([user_message("hi")])
    assert len(server.requests) == 3


def test_client_errors_are_not_retried() -> None:
    with (
        ScriptedChatServer([ScriptedReply(status=400, raw='{"error": "bad model"}')]) as server,
        _backend(server) as backend,
        pytest.raises(BackendError, match=r"HTTP 400.*bad model"),
    ):
        backend.complete([user_message("hi")])
    assert len(server.requests) == 1


def test_timeouts_and_refused_connections_are_retried_then_reported() -> None:
    with (
        ScriptedChatServer(lambda body: ScriptedReply("late", delay_s=1.0)) as server,
        _backend(server, timeout_s=0.2, max_retries=1) as backend,
        pytest.raises(BackendError, match="Timeout"),
    ):
        backend.complete([user_message("hi")])
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = OpenAIChatConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, backoff_s=0.01)
    with OpenAIChatBackend(config) as backend, pytest.raises(BackendError, match="ConnectError"):
        backend.complete([user_message("hi")])
    assert backend.calls == 2


def test_malformed_replies_are_errors() -> None:
    script = [ScriptedReply(raw="not json"), ScriptedReply(raw=json.dumps({"choices": []}))]
    with ScriptedChatServer(script) as server, _backend(server) as backend:
        with pytest.raises(BackendError, match="not JSON"):
            backend.complete([user_message("a")])
        with pytest.raises(BackendError, match=r"no choices\[0\].message.content"):
            backend.complete([user_message("b")])


def test_response_cache_is_keyed_by_the_full_request(tmp_path: Path) -> None:
    with ScriptedChatServer(lambda body: f"reply {len(server.requests)}") as server:
        with _backend(server, cache_dir=str(tmp_path)) as backend:
            first = backend.complete([user_message("plan")])
            again = backend.complete([user_message("plan")])
            warmer = backend.complete([user_message("plan")], temperature=0.7)
        with _backend(server, cache_dir=str(tmp_path)) as fresh:  # a new process would read the same files
            reread = fresh.complete([user_message("plan")])
    assert len(server.requests) == 2
    assert again.cached and again.text == first.text == reread.text and again.latency_s == 0.0
    assert not warmer.cached and warmer.text != first.text
    entries = list(tmp_path.rglob("*.json"))
    assert len(entries) == 2
    stored = json.loads(entries[0].read_text())
    assert stored["request"]["base_url"] == server.base_url and "messages" in stored["request"]


def test_configuration_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIERS_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("TIERS_LLM_MODEL_PATH", raising=False)
    with pytest.raises(ConfigError, match="TIERS_LLM_BASE_URL"):
        make_backend(model="m")
    with ScriptedChatServer(["from env"]) as server:
        monkeypatch.setenv("TIERS_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("TIERS_LLM_MODEL", "env-model")
        monkeypatch.setenv("TIERS_LLM_API_KEY", "k")
        backend = make_backend()
        assert isinstance(backend, OpenAIChatBackend)
        assert backend.config.model == "env-model" and backend.config.api_key == "k"
        assert backend.complete([user_message("hi")]).text == "from env"
    with pytest.raises(ConfigError, match="timeout_s"):
        OpenAIChatConfig.from_dict({"timeout_s": 0})


def _tiny_local_model(folder: Path) -> list[str]:
    """A randomly initialised 1-layer GPT-2 and a word-level tokenizer, built offline and saved to ``folder``."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<unk>", "<eos>", "pick", "up", "the", "apple", "put", "in", "bowl", "user:", "assistant:", "system:"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", eos_token="<eos>")
    fast.save_pretrained(folder)
    config = GPT2Config(vocab_size=len(words), n_positions=1024, n_embd=16, n_layer=1, n_head=2, eos_token_id=1)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return words


def test_transformers_backend_runs_a_local_model_offline(tmp_path: Path) -> None:
    words = _tiny_local_model(tmp_path)
    backend = TransformersChatBackend(TransformersChatConfig(model_path=str(tmp_path), max_tokens=6))
    messages = [system_message("plan"), user_message("put the apple in the bowl")]
    assert backend.prompt(messages).endswith("user: put the apple in the bowl\nassistant:")
    first, second = backend.complete(messages), backend.complete(messages)
    assert first.text == second.text  # greedy decoding is deterministic
    assert first.usage["completion_tokens"] == 6 or "<eos>" not in first.text
    assert set(first.text.split()) <= set(words)
    # the local backend drives a planner like any endpoint (a random model writes words, not subtasks)
    from tiers.apps.evaluation.planning import collect_plan
    from tiers.core.observation import Observation
    from tiers.policies.high.llm_planner import LLMPlanner, LLMPlannerConfig, plan_lines

    planner = LLMPlanner(backend, LLMPlannerConfig(few_shot=0, repair_rounds=0, max_tokens=6))
    pose = np.array([0.3, 0, 0.4, 1, 0, 0, 0])
    texts = collect_plan(planner, "put the apple in the bowl", Observation(np.zeros(7), np.zeros(7), pose, 0.08, 0.0))
    assert planner.requests == 1 and texts == plan_lines(planner.messages[-1]["content"])
    with pytest.raises(BackendError, match="exceeds the model's context of 1024 tokens"):
        backend.complete([user_message("apple " * 1100)])
    with pytest.raises(BackendError, match="text-only"):
        backend.complete([user_message("look", images=[np.zeros((4, 4, 3), np.uint8)])])
    with pytest.raises(ConfigError, match="not a model folder"):
        TransformersChatBackend(TransformersChatConfig(model_path=str(tmp_path / "missing")))
