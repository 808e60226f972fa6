"""Language-model backends of the high tier: an OpenAI-compatible HTTP client and a local transformers model.

Both implement :class:`ChatBackend`: ``complete(messages) -> ChatReply``, with messages in the OpenAI chat
format (``{"role": "user", "content": "..."}``, or content parts with images as base64 data URLs, see
:func:`user_message`). That is how users plug in vLLM, Ollama, llama.cpp's server or a hosted model::

    backend = OpenAIChatBackend(OpenAIChatConfig.from_env())     # TIERS_LLM_BASE_URL / _MODEL / _API_KEY
    reply = backend.complete([system_message("..."), user_message("plan this", images=[rgb])])

The HTTP client retries 429, 5xx and connection errors with exponential backoff (honouring ``Retry-After``),
times out, and can cache replies on disk (opt-in: ``cache_dir``), keyed by the SHA-256 of the full request
(base URL, model, messages, sampling settings), so a rerun of an evaluation costs nothing and gives the same
plans.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from tiers.core.config import Config
from tiers.core.errors import ConfigError, TiersError

ChatMessage = dict[str, Any]  # OpenAI chat format: {"role": ..., "content": str | [parts]}

ENV_BASE_URL = "TIERS_LLM_BASE_URL"  # e.g. http://localhost:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama)
ENV_MODEL = "TIERS_LLM_MODEL"
ENV_API_KEY = "TIERS_LLM_API_KEY"
ENV_CACHE_DIR = "TIERS_LLM_CACHE_DIR"
ENV_MODEL_PATH = "TIERS_LLM_MODEL_PATH"  # a local transformers model folder


class BackendError(TiersError):
    """A language-model call failed for good (bad request, retries exhausted, malformed reply)."""


@dataclass(frozen=True)
class ChatReply:
    """One completion.

    Attributes:
        text: the assistant message's content.
        model: the model that answered (as the server reports it).
        latency_s: s spent waiting for the model (0 for a cache hit).
        cached: the reply came from the response cache.
        usage: token counts as reported ({"prompt_tokens": ..., "completion_tokens": ...}), possibly empty.
    """

    text: str
    model: str
    latency_s: float
    cached: bool = False
    usage: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class ChatBackend(Protocol):
    """Something that completes a chat."""

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> ChatReply:
        """The assistant's reply to ``messages``; raises :class:`BackendError` when it cannot get one."""
        ...


# -- messages ----------------------------------------------------------------------------------------------


def image_data_url(image: NDArray[np.uint8], *, image_format: str = "PNG") -> str:
    """An (H, W, 3) uint8 RGB image as a ``data:image/png;base64,...`` URL (lossless PNG by default)."""
    from PIL import Image

    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {array.shape} {array.dtype}")
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format)
    mime = "jpeg" if image_format.upper() in ("JPG", "JPEG") else image_format.lower()
    return f"data:image/{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def decode_data_url(url: str) -> NDArray[np.uint8]:
    """Inverse of :func:`image_data_url`: (H, W, 3) uint8 RGB."""
    from PIL import Image

    header, _, payload = url.partition(",")
    if not header.startswith("data:image/") or ";base64" not in header:
        raise ValueError(f"not a base64 image data URL: {url[:40]!r}")
    with Image.open(io.BytesIO(base64.b64decode(payload))) as image:
        return np.asarray(image.convert("RGB"))


def system_message(text: str) -> ChatMessage:
    return {"role": "system", "content": text}


def assistant_message(text: str) -> ChatMessage:
    return {"role": "assistant", "content": text}


def user_message(text: str, images: Sequence[NDArray[np.uint8]] = ()) -> ChatMessage:
    """A user turn; with images, OpenAI content parts: the text, then one ``image_url`` part per image."""
    if not images:
        return {"role": "user", "content": text}
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    parts += [{"type": "image_url", "image_url": {"url": image_data_url(image)}} for image in images]
    return {"role": "user", "content": parts}


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a message, whether its content is a string or a list of parts (images left out)."""
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    return "\n".join(str(part.get("text", "")) for part in content if part.get("type") == "text")


def message_images(message: Mapping[str, Any]) -> list[str]:
    """The image data URLs of a message (empty for a text-only message)."""
    content = message.get("content", "")
    if isinstance(content, str):
        return []
    return [str(part["image_url"]["url"]) for part in content if part.get("type") == "image_url"]


_FENCE = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


def extract_code(reply: str) -> str:
    """The code in a reply: the fenced blocks if there are any, else the whole text."""
    blocks = _FENCE.findall(reply)
    code = "\n".join(blocks) if blocks else reply
    return code.strip("\n")


# -- cache ---------------------------------------------------------------------------------------------------


class ResponseCache:
    """Replies on disk as JSON, one file per request, keyed by the SHA-256 of the canonical request JSON.

    Layout: ``<root>/<key[:2]>/<key>.json`` holding ``{"request": ..., "reply": ...}`` (the request is kept so a
    cache folder can be audited). Writes are atomic (temporary file + rename), so concurrent workers are safe.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def key(request: Mapping[str, Any]) -> str:
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, request: Mapping[str, Any]) -> dict[str, Any] | None:
        path = self._path(self.key(request))
        if not path.is_file():
            return None
        try:
            reply: dict[str, Any] = json.loads(path.read_text())["reply"]
        except (ValueError, KeyError) as error:
            raise BackendError(f"{path}: corrupt cache entry ({error}); delete it") from None
        return reply

    def put(self, request: Mapping[str, Any], reply: Mapping[str, Any]) -> None:
        path = self._path(self.key(request))
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({"request": request, "reply": reply}, ensure_ascii=False))
        os.replace(temporary, path)


# -- OpenAI-compatible HTTP -----------------------------------------------------------------------------------


@dataclass
class OpenAIChatConfig(Config):
    """Where and how to reach an OpenAI-compatible chat-completions endpoint."""

    base_url: str = ""  # e.g. http://localhost:8000/v1; the client POSTs to {base_url}/chat/completions
    model: str = ""  # model name the server knows ("Qwen/Qwen2.5-VL-7B-Instruct", "llama3.2")
    api_key: str = ""  # sent as "Authorization: Bearer <key>"; empty: no header (local servers)
    timeout_s: float = 60.0  # per HTTP request (connect + read)
    max_retries: int = 4  # retries after the first attempt, on 429 / 5xx / connection errors / timeouts
    backoff_s: float = 0.5  # first retry delay; doubles each retry
    backoff_max_s: float = 8.0  # cap of one delay (also caps a server's Retry-After)
    temperature: float = 0.0  # default sampling temperature (0: greedy, reproducible plans)
    max_tokens: int = 512  # default completion length
    cache_dir: str | None = None  # folder of the response cache; None: no cache (opt-in)

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.backoff_s < 0 or self.max_retries < 0:
            raise ValueError(
                f"timeout_s must be > 0, backoff_s and max_retries >= 0; got {self.timeout_s}, "
                f"{self.backoff_s}, {self.max_retries}"
            )

    @classmethod
    def from_env(cls, **overrides: Any) -> OpenAIChatConfig:
        """Defaults, then TIERS_LLM_BASE_URL / TIERS_LLM_MODEL / TIERS_LLM_API_KEY / TIERS_LLM_CACHE_DIR, then
        ``overrides`` (keyword arguments that are not None)."""
        values: dict[str, Any] = {}
        for key, variable in (
            ("base_url", ENV_BASE_URL),
            ("model", ENV_MODEL),
            ("api_key", ENV_API_KEY),
            ("cache_dir", ENV_CACHE_DIR),
        ):
            if os.environ.get(variable):
                values[key] = os.environ[variable]
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls.from_dict(values, source="environment")


RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})  # timeouts, rate limits, server-side failures


class OpenAIChatBackend:
    """Chat completions over HTTP (httpx) against any OpenAI-compatible server."""

    def __init__(self, config: OpenAIChatConfig | None = None):
        import httpx

        config = config or OpenAIChatConfig.from_env()
        if not config.base_url:
            raise ConfigError(
                f"no chat endpoint: set base_url in the config or {ENV_BASE_URL} (e.g. http://localhost:8000/v1)"
            )
        if not config.model:
            raise ConfigError(f"no model name: set model in the config or {ENV_MODEL}")
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._http = httpx.Client(base_url=config.base_url.rstrip("/") + "/", timeout=config.timeout_s, headers=headers)
        self._cache = ResponseCache(config.cache_dir) if config.cache_dir else None
        self.calls = 0  # HTTP requests sent (retries included)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenAIChatBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> ChatReply:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": list(messages),
            "temperature": self.config.temperature if temperature is None else temperature,
            "max_tokens": self.config.max_tokens if max_tokens is None else max_tokens,
        }
        if stop:
            body["stop"] = list(stop)
        cache_request = {"base_url": self.config.base_url, **body}
        if self._cache is not None:
            hit = self._cache.get(cache_request)
            if hit is not None:
                return ChatReply(hit["text"], hit["model"], 0.0, True, dict(hit.get("usage", {})))
        start = time.perf_counter()
        data = self._post(body)
        latency = time.perf_counter() - start
        try:
            text = data["choices"][0]["message"]["content"]
            if not isinstance(text, str):
                raise TypeError(f"content is {type(text).__name__}")
        except (KeyError, IndexError, TypeError) as error:
            raise BackendError(
                f"{self.config.base_url}: reply has no choices[0].message.content ({error}): {str(data)[:300]}"
            ) from None
        usage = {k: int(v) for k, v in (data.get("usage") or {}).items() if isinstance(v, int)}
        reply = ChatReply(text, str(data.get("model", self.config.model)), latency, False, usage)
        if self._cache is not None:
            self._cache.put(cache_request, {"text": reply.text, "model": reply.model, "usage": reply.usage})
        return reply

    def _post(self, body: Mapping[str, Any]) -> dict[str, Any]:
        import httpx

        url = "chat/completions"
        last = ""
        for attempt in range(self.config.max_retries + 1):
            retry_after: float | None = None
            try:
                self.calls += 1
                response = self._http.post(url, json=body)
            except (httpx.TransportError, httpx.TimeoutException) as error:  # connection refused/reset, timeouts
                last = f"{type(error).__name__}: {error}"
            else:
                if response.status_code < 300:
                    try:
                        data: dict[str, Any] = response.json()
                    except ValueError:
                        raise BackendError(f"{response.url}: reply is not JSON: {response.text[:300]!r}") from None
                    return data
                last = f"HTTP {response.status_code}: {response.text[:300]}"
                if response.status_code not in RETRY_STATUS:
                    raise BackendError(f"{response.url}: {last}")
                retry_after = _retry_after(response.headers.get("retry-after"))
            if attempt < self.config.max_retries:
                delay = self.config.backoff_s * 2**attempt if retry_after is None else retry_after
                time.sleep(min(delay, self.config.backoff_max_s))
        raise BackendError(
            f"{self.config.base_url}/{url}: gave up after {self.config.max_retries + 1} attempts; last error: {last}"
        )


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to the exponential schedule


# -- local transformers ---------------------------------------------------------------------------------------


@dataclass
class TransformersChatConfig(Config):
    """A causal language model in a local folder (``save_pretrained`` layout), run with transformers."""

    model_path: str = ""  # folder with config.json, weights and tokenizer files; env TIERS_LLM_MODEL_PATH
    device: str = "cpu"  # torch device
    temperature: float = 0.0  # 0: greedy decoding
    max_tokens: int = 256  # new tokens per completion
    seed: int = 0  # sampling seed when temperature > 0

    @classmethod
    def from_env(cls, **overrides: Any) -> TransformersChatConfig:
        values: dict[str, Any] = {}
        if os.environ.get(ENV_MODEL_PATH):
            values["model_path"] = os.environ[ENV_MODEL_PATH]
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls.from_dict(values, source="environment")


class TransformersChatBackend:
    """Chat completions from a local transformers model, offline (``local_files_only``).

    The prompt is the tokenizer's chat template when it has one, else ``"<role>: <text>"`` lines ending with
    ``"assistant:"``. Text only: a message with images raises :class:`BackendError` (use a VLM server through
    :class:`OpenAIChatBackend` for images).
    """

    def __init__(self, config: TransformersChatConfig):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(config.model_path)
        if not config.model_path or not (path / "config.json").is_file():
            raise ConfigError(f"model_path {config.model_path!r} is not a model folder (no config.json in it)")
        self.config = config
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
        # nn.Module.to and .eval work in place; called through nn.Module because transformers' stubs mistype them
        torch.nn.Module.to(model, torch.device(config.device))
        torch.nn.Module.eval(model)
        self.model: Any = model  # a transformers causal LM (its generate() stubs do not type-check through Auto*)

    def prompt(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt text the model sees for ``messages``."""
        for message in messages:
            if message_images(message):
                raise BackendError("TransformersChatBackend is text-only; this message has images")
        turns = [{"role": str(m["role"]), "content": message_text(m)} for m in messages]
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
            return str(text)
        return "".join(f"{turn['role']}: {turn['content']}\n" for turn in turns) + "assistant:"

    def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> ChatReply:
        torch = self._torch
        temperature = self.config.temperature if temperature is None else temperature
        inputs = self.tokenizer(self.prompt(messages), return_tensors="pt").to(self.config.device)
        new = self.config.max_tokens if max_tokens is None else max_tokens
        context = getattr(self.model.config, "max_position_embeddings", None)
        if context is not None and inputs["input_ids"].shape[1] + new > context:
            raise BackendError(
                f"{self.config.model_path}: prompt of {inputs['input_ids'].shape[1]} tokens + {new} new tokens "
                f"exceeds the model's context of {context} tokens"
            )
        start = time.perf_counter()
        generator_kwargs: dict[str, Any] = {"do_sample": temperature > 0}
        if temperature > 0:
            torch.manual_seed(self.config.seed)
            generator_kwargs["temperature"] = temperature
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            output = self.model.generate(
                **inputs,
                max_new_tokens=new,
                pad_token_id=pad,
                **generator_kwargs,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]  # (T_new,)
        text = str(self.tokenizer.decode(new_tokens, skip_special_tokens=True))
        for marker in stop or ():
            text = text.split(marker, 1)[0]
        usage = {"prompt_tokens": int(inputs["input_ids"].shape[1]), "completion_tokens": int(new_tokens.shape[0])}
        return ChatReply(text, str(self.config.model_path), time.perf_counter() - start, False, usage)


def make_backend(
    *, base_url: str | None = None, model: str | None = None, model_path: str | None = None, **overrides: Any
) -> ChatBackend:
    """The backend the arguments and environment name: a local model folder wins over an HTTP endpoint.

    Raises:
        ConfigError: neither a model path nor an endpoint is configured (the message names the variables).
    """
    path = model_path or os.environ.get(ENV_MODEL_PATH)
    if path:
        return TransformersChatBackend(TransformersChatConfig.from_env(model_path=path))
    return OpenAIChatBackend(OpenAIChatConfig.from_env(base_url=base_url, model=model, **overrides))
