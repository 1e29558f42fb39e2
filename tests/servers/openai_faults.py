"""An OpenAI-compatible chat-completions server on loopback whose replies a test programs:
a healthy answer built from the request's own schema, or one fault per model name.

It runs in a thread of the test process (so a test reads its request log directly), and
it counts every request it receives, which is what a ledger must match.

Faults (`FAULTS`): HTTP 404 / 401 / 429 / 500, a reply slower than the client's timeout,
a reply whose content is broken JSON, a tool call with unparseable arguments, a reply in
the wrong schema, and a call to a tool that was never offered. A 401 echoes the request's
Authorization header in its body, as some proxies do, so redaction is tested against a
server that leaks the key.

The same HTTP faults are served on Ollama's chat endpoint (`POST /api/chat`), shaped as
Ollama answers: the status with `{"error": "..."}`; a healthy reply is one NDJSON line.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers.process import LOOPBACK

__all__ = ["FAULTS", "FaultServer", "fault_server", "instance_for"]

FAULTS = (
    "404",
    "401",
    "429",
    "500",
    "timeout",
    "malformed_json",
    "invalid_tool_call",
    "wrong_schema",
    "hallucinated_tool",
)


def instance_for(schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None) -> Any:
    """A small value that satisfies `schema` (a JSON schema): the healthy model's answer."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return instance_for(defs[str(schema["$ref"]).rsplit("/", 1)[-1]], defs)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return instance_for(options[0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    if "default" in schema and schema.get("type") != "object":
        return schema["default"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = schema.get("required", list(props))
        return {name: instance_for(props[name], defs) for name in required if name in props}
    if kind == "array":
        return [instance_for(schema["items"], defs)] if schema.get("minItems") else []
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 0.9 if schema.get("maximum") == 1 else 1.0))
    if kind == "boolean":
        return True
    return "ok"


@dataclass
class ReceivedRequest:
    model: str
    body: dict[str, Any]
    authorization: str
    path: str = "/v1/chat/completions"


@dataclass
class FaultServer:
    """The server's programme (model name -> fault) and what it received."""

    port: int = 0
    faults: dict[str, str] = field(default_factory=dict)
    # How long a "timeout" reply waits (longer than the tier's timeout_s).
    slow_s: float = 3.0
    requests: list[ReceivedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    def received(self, model: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.model == model)

    def reset(self, **faults: str) -> None:
        with self._lock:
            self.requests.clear()
            self.faults = dict(faults)

    # -- replies --------------------------------------------------------------------------

    def reply(self, request: ReceivedRequest) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            fault = self.faults.get(request.model, "ok")
        if request.path.startswith("/api/"):
            return self._ollama_reply(request, fault)
        body = request.body
        if fault == "404":
            return _error(404, f"The model '{request.model}' does not exist", "model_not_found")
        if fault == "401":
            return _error(401, f"Incorrect API key provided: {request.authorization}", "invalid_api_key")
        if fault == "429":
            return _error(429, "Rate limit reached for requests", "rate_limit_exceeded", retry_after="1")
        if fault == "500":
            return _error(500, "The server had an error while processing your request", "server_error")
        if fault == "timeout":
            time.sleep(self.slow_s)
        tools = body.get("tools") or []
        forced = _forced_name(body)
        if fault == "malformed_json":
            return _completion(request.model, content='{"answer": "unterminated')
        if fault == "invalid_tool_call":
            name = forced or (tools[0]["function"]["name"] if tools else "answer")
            return _completion(request.model, calls=[(name, '{"args": tru')])
        if fault == "wrong_schema":
            wrong = json.dumps({"delete_all_orders": True})
            if tools:
                return _completion(request.model, calls=[(forced or tools[0]["function"]["name"], wrong)])
            return _completion(request.model, content=wrong)
        if fault == "hallucinated_tool":
            return _completion(request.model, calls=[("delete_all_orders", json.dumps({"confirm": True}))])
        return self._healthy(request.model, body, tools, forced)

    def _healthy(self, model: str, body: Mapping[str, Any], tools: list[Any], forced: str | None) -> tuple[int, dict[str, str], bytes]:
        if tools:
            tool = next((t for t in tools if t["function"]["name"] == forced), tools[0])
            args = instance_for(tool["function"].get("parameters") or {"type": "object"})
            return _completion(model, calls=[(tool["function"]["name"], json.dumps(args))])
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return _completion(model, content=json.dumps(instance_for(fmt["json_schema"]["schema"])))
        return _completion(model, content="ok")


    def _ollama_reply(self, request: ReceivedRequest, fault: str) -> tuple[int, dict[str, str], bytes]:
        """Ollama's answers: the HTTP faults as `{"error": ...}`, anything else a short text reply."""
        errors = {
            "404": (404, f"model '{request.model}' not found"),
            # Ollama behind an authenticating proxy (or ollama.com without a key).
            "401": (401, f"unauthorized: {request.authorization or 'no credentials'}"),
            "429": (429, "too many requests"),
            "500": (500, "llama runner process has terminated: exit status 2"),
        }
        if fault in errors:
            status, message = errors[fault]
            return status, {"Content-Type": "application/json"}, json.dumps({"error": message}).encode()
        if fault == "timeout":
            time.sleep(self.slow_s)
        done = {
            "model": request.model, "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": "ok"}, "done": True, "done_reason": "stop",
            "prompt_eval_count": 40, "eval_count": 12,
        }
        return 200, {"Content-Type": "application/x-ndjson"}, (json.dumps(done) + "\n").encode()


def _forced_name(body: Mapping[str, Any]) -> str | None:
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping):
        return str(choice.get("function", {}).get("name")) or None
    return None


def _error(status: int, message: str, code: str, *, retry_after: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json"}
    if retry_after:
        headers["Retry-After"] = retry_after
    payload = {"error": {"message": message, "type": "invalid_request_error", "code": code}}
    return status, headers, json.dumps(payload).encode()


def _completion(model: str, *, content: str | None = None, calls: list[tuple[str, str]] | None = None) -> tuple[int, dict[str, str], bytes]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{uuid.uuid4().hex[:10]}", "type": "function", "function": {"name": n, "arguments": a}} for n, a in calls
        ]
    payload = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:10]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52},
    }
    return 200, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _handler(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # the test output stays quiet
            return

        def do_GET(self) -> None:  # /v1/models, for doctor-style probes
            payload = {"object": "list", "data": [{"id": m, "object": "model"} for m in sorted(server.faults)]}
            self._send(200, {"Content-Type": "application/json"}, json.dumps(payload).encode())

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except json.JSONDecodeError:
                self._send(*_error(400, "the request body is not JSON", "bad_request"))
                return
            request = ReceivedRequest(str(body.get("model")), body, self.headers.get("Authorization", ""), self.path)
            with server._lock:
                server.requests.append(request)
            status, headers, payload = server.reply(request)
            # The client may have given up (the "timeout" fault): then nothing is left to answer.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._send(status, headers, payload)

        def _send(self, status: int, headers: Mapping[str, str], payload: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@contextmanager
def fault_server(**faults: str) -> Iterator[FaultServer]:
    """Serve on a free loopback port for the duration of the block."""
    state = FaultServer(faults=dict(faults))
    httpd = ThreadingHTTPServer((LOOPBACK, 0), _handler(state))
    httpd.daemon_threads = True
    state.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, name="fault-server", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
