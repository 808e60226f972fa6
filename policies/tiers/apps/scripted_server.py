"""A real local OpenAI-compatible chat-completions server with scripted replies, for tests and offline demos.

It is an HTTP server (stdlib ``http.server``, one thread per request) on 127.0.0.1, implementing
``POST /v1/chat/completions`` and ``GET /v1/models``. What it answers is scripted: a list of replies used in
order, or a function of the request body. A reply may be text, or a :class:`ScriptedReply` with an HTTP status
(to exercise retries), a delay (to exercise timeouts) or a malformed body::

    with ScriptedChatServer(["pick up the apple\\nput the apple in the bowl"]) as server:
        backend = OpenAIChatBackend(OpenAIChatConfig(base_url=server.base_url, model="scripted"))
        backend.complete([user_message("put the apple in the bowl")]).text
        server.requests[0]["messages"]          # every request body, as JSON, for assertions

Run it as a process to serve an offline demo endpoint whose replies come from the rule-based grammar planner
(a plumbing check of the LLM planner, not a language model)::

    python -m tiers.apps.scripted_server --port 8000 --grammar-planner   # LLMPlanner requests
    python -m tiers.apps.scripted_server --port 8000 --grammar-code      # Code as Policies requests
    python -m tiers.apps.scripted_server --port 8000 --grammar-steering  # SteeringPlanner queries
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tiers.commands.recovery import recovery_steps
from tiers.commands.subtasks import Subtask, SubtaskError
from tiers.policies.high.grammar_planner import GrammarParseError, GrammarPlanner
from tiers.policies.high.llm_planner import instruction_from_prompt
from tiers.policies.high.primitives import program_for_subtasks
from tiers.policies.high.steering import FINISHED_PREFIX, HISTORY_PREFIX
from tiers.services.chat import message_text


@dataclass(frozen=True)
class ScriptedReply:
    """One scripted answer.

    Attributes:
        text: the assistant content (ignored when ``status`` is not 200 or ``raw`` is set).
        status: HTTP status to answer with (429 or 503 exercise the client's retries).
        delay_s: s to wait before answering (exercises client timeouts).
        raw: a raw response body to send instead of a well-formed completion (exercises error paths).
        headers: extra response headers (e.g. ``{"Retry-After": "0"}``).
    """

    text: str = ""
    status: int = 200
    delay_s: float = 0.0
    raw: str | None = None
    headers: Mapping[str, str] | None = None


Script = Sequence[str | ScriptedReply] | Callable[[dict[str, Any]], str | ScriptedReply]


class ScriptedChatServer:
    """The server; a context manager that starts it on a free port in a background thread.

    Attributes:
        requests: every chat-completions request body received, in order (parsed JSON).
        model: the model name it reports.
    """

    def __init__(self, script: Script, *, model: str = "scripted", host: str = "127.0.0.1", port: int = 0):
        self._script = script
        self._index = 0
        self._lock = threading.Lock()
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: what a client's ``base_url`` should be."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> ScriptedChatServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-chat-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> ScriptedChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reply_for(self, body: dict[str, Any]) -> ScriptedReply:
        """Record ``body`` and pick the scripted reply for it."""
        with self._lock:
            self.requests.append(body)
            if callable(self._script):
                reply = self._script(body)
            elif self._index < len(self._script):
                reply = self._script[self._index]
                self._index += 1
            else:
                reply = ScriptedReply(
                    status=400, raw=json.dumps({"error": f"script exhausted after {len(self._script)} replies"})
                )
        return reply if isinstance(reply, ScriptedReply) else ScriptedReply(text=str(reply))


def completion_body(text: str, model: str, prompt_chars: int) -> dict[str, Any]:
    """A chat-completions response body in the OpenAI format (token counts approximated from characters)."""
    return {
        "id": f"chatcmpl-scripted-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_chars // 4,
            "completion_tokens": len(text) // 4,
            "total_tokens": (prompt_chars + len(text)) // 4,
        },
    }


def _handler_for(server: ScriptedChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
        # one send per response and no Nagle: otherwise headers and body go out in two packets and the
        # client's delayed ACK adds ~40 ms to every keep-alive request
        disable_nagle_algorithm = True
        wbufsize = 1 << 16

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests and demos do not want an access log on stderr."""

        def _send(self, status: int, body: str, headers: Mapping[str, str] | None = None) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, json.dumps({"object": "list", "data": [{"id": server.model, "object": "model"}]}))
            else:
                self._send(404, json.dumps({"error": f"no route GET {self.path}"}))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, json.dumps({"error": f"no route POST {self.path}"}))
                return
            try:
                body = json.loads(raw)
                if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                    raise ValueError("body must be an object with a 'messages' list")
            except ValueError as error:
                self._send(400, json.dumps({"error": f"bad request: {error}"}))
                return
            try:
                reply = server.reply_for(body)
            except Exception as error:  # a failing script function is a 500, as a crashing server would give
                self._send(500, json.dumps({"error": f"script raised {type(error).__name__}: {error}"}))
                return
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if reply.raw is not None:
                self._send(reply.status, reply.raw, reply.headers)
            elif reply.status != 200:
                self._send(reply.status, json.dumps({"error": f"scripted status {reply.status}"}), reply.headers)
            else:
                prompt_chars = len(json.dumps(body["messages"]))
                self._send(200, json.dumps(completion_body(reply.text, server.model, prompt_chars)), reply.headers)

    return Handler


def grammar_planner_script(body: dict[str, Any]) -> str:
    """Answer a planning request of :class:`~tiers.policies.high.llm_planner.LLMPlanner` with the grammar
    planner's plan for the instruction in its last user message (offline plumbing check, not a language model)."""
    instruction = instruction_from_prompt(message_text(body["messages"][-1]))
    try:
        return "\n".join(step.text for step in GrammarPlanner().parse(instruction))
    except ValueError as error:
        return f"# cannot plan: {error}"


def grammar_code_script(body: dict[str, Any]) -> str:
    """Answer a Code as Policies request with code calling the primitives for the grammar planner's plan of the
    query (offline plumbing check of the CaP pipeline, not a language model).

    A closed-loop re-write (:class:`~tiers.policies.high.code_as_policies.ClosedLoopCodeAsPolicies`) puts comment
    lines before the query: the steps under ``# done so far:`` are left out of the plan, and a ``# failed:`` place
    whose reason names a missing step gets that step first (the grammar planner's own re-planning rule)."""
    lines = [line.strip() for line in message_text(body["messages"][-1]).splitlines() if line.strip()]
    query = instruction_from_prompt(lines[-1].removeprefix("# ").rstrip(".")) if lines else ""
    try:
        plan = list(GrammarPlanner().parse(query))
    except GrammarParseError:
        return "say('I cannot do that')"
    for line in lines[:-1]:
        if line.startswith("# done so far: "):
            for text in line.removeprefix("# done so far: ").split("; "):
                done = next((step for step in plan if step.text == text), None)
                if done is not None:
                    plan.remove(done)
    failures = [line.removeprefix("# failed: ") for line in lines[:-1] if line.startswith("# failed: ")]
    if failures:
        text, _, reason = failures[-1].partition(" (")
        try:
            failed = Subtask.parse(text)
        except SubtaskError:
            failed = None
        if failed is not None:
            redo = recovery_steps(failed, reason.removesuffix(")"))
            plan = [*redo, *(step for step in plan if step not in redo)]
    return program_for_subtasks(plan)


def grammar_steering_script(body: dict[str, Any]) -> str:
    """Answer a :class:`~tiers.policies.high.steering.SteeringPlanner` query with the grammar plan's steps, one
    at a time (offline plumbing check, not a VLM: it sees no image). The first query gets the first step; a query
    saying ``The robot finished: <step>`` gets the step after it (``done`` after the last); any other query
    repeats the last steering, so periodic queries keep the command in force."""
    text = message_text(body["messages"][-1])
    instruction, finished, previous = "", None, None
    for line in text.splitlines():
        if line.startswith("Instruction: "):
            instruction = line.removeprefix("Instruction: ").strip()
        elif line.startswith(FINISHED_PREFIX):
            finished = line.removeprefix(FINISHED_PREFIX).strip()
        elif line.startswith(HISTORY_PREFIX):
            previous = line.removeprefix(HISTORY_PREFIX).split(" | ")[-1].strip()
    try:
        plan = [step.text for step in GrammarPlanner().parse(instruction)]
    except GrammarParseError:
        return "done"
    if finished is not None:
        after = plan.index(finished) + 1 if finished in plan else len(plan)
        return f"subtask: {plan[after]}" if after < len(plan) else "done"
    return previous or f"subtask: {plan[0]}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a local chat-completions server with scripted replies")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--reply", action="append", default=[], help="a reply (repeatable, used in order)")
    parser.add_argument("--grammar-planner", action="store_true", help="answer plans with the grammar planner")
    parser.add_argument("--grammar-code", action="store_true", help="answer Code as Policies with grammar-plan code")
    parser.add_argument(
        "--grammar-steering", action="store_true", help="answer steering queries with the grammar plan's steps"
    )
    args = parser.parse_args(argv)
    script: Script = list(args.reply)
    if args.grammar_planner:
        script = grammar_planner_script
    elif args.grammar_code:
        script = grammar_code_script
    elif args.grammar_steering:
        script = grammar_steering_script
    server = ScriptedChatServer(script, port=args.port)
    print(f"serving scripted chat completions at {server.base_url} (Ctrl-C stops)")
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()


if __name__ == "__main__":
    main()
