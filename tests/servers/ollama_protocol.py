"""An HTTP server that speaks Ollama's API, backed by the embedded llama.cpp engine.

No Ollama binary can be installed where the tests run, so the `ollama` provider path
(ChatOllama and the `ollama` client) is tested against this server instead:

    python -m tests.servers.ollama_protocol --port 11435 --model smollm2-135m-instruct=smollm2:135m

Endpoints, shaped as in Ollama's docs/api.md: `GET /`, `GET /api/version`, `GET /api/tags`,
`GET /api/ps`, `POST /api/show`, `POST /api/chat` (NDJSON stream by default, one object with
`"stream": false`; `format` = "json" or a JSON schema, decoded under a llama.cpp grammar;
`tools` in OpenAI function format, answered as `message.tool_calls`; `options.num_predict`,
`options.temperature`, `options.stop`). Errors are `{"error": "..."}`; an unknown model
is HTTP 404 `model '<name>' not found`.

Where Ollama leaves the tool decision to the model, `--tool-choice required` makes every
request that carries tools answer with a tool call: the 135M test model rarely decides to
call one on its own, and the tests check the protocol, not the model's judgement.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tierflow.model_tiers.providers.embedded import (
    NO_TOOL,
    EmbeddedEngine,
    get_engine,
    tool_call_schema,
    tools_prompt,
)

__all__ = ["ServedModel", "ChatRequest", "create_app", "load_models", "main"]

SERVER_VERSION = "0.0.0-tierflow-test"
ToolChoice = Literal["auto", "required"]

log = logging.getLogger("ollama_protocol")

# GGUF general.file_type -> Ollama's quantization_level label (the ones our models use).
_FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 15: "Q4_K_M", 17: "Q5_K_M", 18: "Q6_K"}


@dataclass(frozen=True)
class ServedModel:
    """One model the server answers for, under the name clients ask for."""

    name: str
    model_id: str
    engine: EmbeddedEngine
    digest: str
    size: int
    modified_at: str

    def details(self) -> dict[str, Any]:
        meta = self.engine.metadata
        family = meta.get("general.architecture", "unknown")
        file_type = _as_number(meta.get("general.file_type", ""))
        return {
            "parent_model": "",
            "format": "gguf",
            "family": family,
            "families": [family],
            "parameter_size": meta.get("general.size_label", ""),
            "quantization_level": _FILE_TYPES.get(file_type, str(file_type)) if isinstance(file_type, int) else "",
        }

    def model_info(self) -> dict[str, Any]:
        meta = self.engine.metadata
        arch = meta.get("general.architecture", "")
        # Tokenizer tables and the chat template are huge; Ollama leaves them out unless verbose.
        keep = [k for k in meta if k.startswith("general.") or (arch and k.startswith(f"{arch}."))]
        return {k: _as_number(meta[k]) for k in sorted(keep)}


def _as_number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except (TypeError, ValueError):
            continue
    return value


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _full_name(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


# -- request models ----------------------------------------------------------------------


class _Lenient(BaseModel):
    # Ollama ignores fields it does not use (images, think, keep_alive...); so do we.
    model_config = ConfigDict(extra="ignore")


class ChatMessage(_Lenient):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    tool_calls: list[dict[str, Any]] | None = None
    tool_name: str | None = None


class ChatOptions(_Lenient):
    num_predict: int | None = None
    temperature: float | None = Field(default=None, ge=0.0)
    stop: list[str] | None = None


class ChatRequest(_Lenient):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    format: Literal["", "json"] | dict[str, Any] | None = None
    options: ChatOptions = Field(default_factory=ChatOptions)
    stream: bool = True
    # Ollama >= 0.12: the chosen tokens' log-probabilities, in the final chunk here.
    logprobs: bool | None = None
    top_logprobs: int | None = None


class ShowRequest(_Lenient):
    model: str | None = None
    name: str | None = None  # the field's name before Ollama 0.4


# -- decoding ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Decode:
    """What to ask the engine, derived from one chat request."""

    messages: list[dict[str, str]]
    json_schema: dict[str, Any] | None
    tools: Sequence[dict[str, Any]]
    forced_tool: str | None
    max_tokens: int
    temperature: float
    stop: list[str] | None


def _engine_messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for m in messages:
        text = m.content or ""
        if m.role == "assistant" and m.tool_calls:
            # The same rendering as the embedded provider: small chat templates have no tool calls.
            fn = m.tool_calls[0].get("function", {})
            text = json.dumps({"name": fn.get("name"), "arguments": fn.get("arguments", {})})
        if m.role == "tool":
            out.append({"role": "user", "content": f"Tool result: {text}"})
        else:
            out.append({"role": m.role, "content": text})
    return out


def _plan(req: ChatRequest, tool_choice: ToolChoice, default_max_tokens: int) -> _Decode:
    messages = _engine_messages(req.messages)
    tools = [t for t in (req.tools or []) if isinstance(t.get("function"), dict)]
    forced: str | None = None
    schema: dict[str, Any] | None = None
    if tools:
        allow_none = tool_choice == "auto"
        if tool_choice == "required" and len(tools) == 1:
            forced = tools[0]["function"]["name"]
        schema = tool_call_schema(tools, forced, allow_none)
        messages.insert(0, {"role": "system", "content": tools_prompt(tools, forced, allow_none)})
    elif req.format == "json":
        schema = {"type": "object"}
    elif isinstance(req.format, dict):
        schema = req.format
    num_predict = req.options.num_predict
    return _Decode(
        messages=messages,
        json_schema=schema,
        tools=tools,
        forced_tool=forced,
        max_tokens=num_predict if num_predict is not None and num_predict > 0 else default_max_tokens,
        # Ollama's default temperature.
        temperature=0.8 if req.options.temperature is None else req.options.temperature,
        stop=req.options.stop,
    )


def _reply_message(plan: _Decode, text: str) -> dict[str, Any]:
    """The assistant message: plain content, or tool calls parsed from the grammar-bound JSON."""
    if not plan.tools:
        return {"role": "assistant", "content": text}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        # Cut off by num_predict before the JSON closed: hand back the raw text, as Ollama
        # does when a model's tool call does not parse; the client decides what that means.
        return {"role": "assistant", "content": text}
    name, args = (plan.forced_tool, data) if plan.forced_tool else (data["name"], data["arguments"])
    if name == NO_TOOL:
        return {"role": "assistant", "content": str(args.get("reply", ""))}
    return {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": name, "arguments": args}}]}


@dataclass(frozen=True)
class _Event:
    kind: Literal["text", "done", "error"]
    text: str = ""
    completion: Mapping[str, Any] | None = None
    first_token_ns: int = 0
    elapsed_ns: int = 0


def _decode_in_thread(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[_Event], engine: EmbeddedEngine, plan: _Decode
) -> None:
    """Runs in a worker thread: decode, pushing text deltas then one `done` (or `error`) event."""
    started = time.perf_counter_ns()
    first: list[int] = []

    def on_text(delta: str) -> None:
        if not first:
            first.append(time.perf_counter_ns() - started)
        loop.call_soon_threadsafe(queue.put_nowait, _Event("text", text=delta))

    try:
        completion = engine.chat(
            plan.messages,
            json_schema=plan.json_schema,
            max_tokens=plan.max_tokens,
            temperature=plan.temperature,
            stop=plan.stop,
            on_text=on_text,
        )
    except Exception as err:
        log.exception("decode failed")
        loop.call_soon_threadsafe(queue.put_nowait, _Event("error", text=f"{type(err).__name__}: {err}"))
        return
    elapsed = time.perf_counter_ns() - started
    event = _Event("done", completion=completion, first_token_ns=first[0] if first else elapsed, elapsed_ns=elapsed)
    loop.call_soon_threadsafe(queue.put_nowait, event)


def _logprobs(done: _Event) -> list[dict[str, Any]]:
    """Ollama's `logprobs`: one {token, logprob} per generated token."""
    choice = (done.completion or {}).get("choices", [{}])[0]
    return [{"token": t["token"], "logprob": t["logprob"]} for t in (choice.get("logprobs") or {}).get("content") or []]


def _stats(done: _Event) -> dict[str, Any]:
    completion = done.completion or {}
    usage = completion.get("usage", {})
    reason = completion.get("choices", [{}])[0].get("finish_reason") or "stop"
    return {
        "done": True,
        "done_reason": "length" if reason == "length" else "stop",
        "total_duration": done.elapsed_ns,
        "load_duration": 0,
        "prompt_eval_count": int(usage.get("prompt_tokens", 0)),
        "prompt_eval_duration": done.first_token_ns,
        "eval_count": int(usage.get("completion_tokens", 0)),
        "eval_duration": max(0, done.elapsed_ns - done.first_token_ns),
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


# -- the app -------------------------------------------------------------------------------


def create_app(
    models: Mapping[str, ServedModel], *, tool_choice: ToolChoice = "auto", default_max_tokens: int = 512
) -> FastAPI:
    """The FastAPI app serving `models` (keyed by full name, e.g. "smollm2:135m")."""
    app = FastAPI(title="Ollama-protocol test server", docs_url=None, redoc_url=None, openapi_url=None)

    def find(name: str) -> ServedModel | None:
        return models.get(_full_name(name))

    async def parse(request: Request, model: type[BaseModel]) -> BaseModel | JSONResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError as err:
            return _error(400, f"invalid JSON body: {err}")
        try:
            return model.model_validate(body)
        except ValidationError as err:
            return _error(400, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()))

    @app.get("/")
    @app.head("/")
    async def root() -> Response:
        return PlainTextResponse("Ollama is running")

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": SERVER_VERSION}

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        return {
            "models": [
                {
                    "name": m.name,
                    "model": m.name,
                    "modified_at": m.modified_at,
                    "size": m.size,
                    "digest": m.digest,
                    "details": m.details(),
                }
                for m in models.values()
            ]
        }

    @app.get("/api/ps")
    async def ps() -> dict[str, Any]:
        return {
            "models": [
                {
                    "name": m.name,
                    "model": m.name,
                    "size": m.size,
                    "digest": m.digest,
                    "details": m.details(),
                    "expires_at": "2999-01-01T00:00:00Z",
                    "size_vram": 0,
                    "context_length": m.engine.n_ctx,
                }
                for m in models.values()
            ]
        }

    @app.post("/api/show")
    async def show(request: Request) -> Response:
        parsed = await parse(request, ShowRequest)
        if isinstance(parsed, JSONResponse):
            return parsed
        assert isinstance(parsed, ShowRequest)
        name = parsed.model or parsed.name
        if not name:
            return _error(400, "model is required")
        served = find(name)
        if served is None:
            return _error(404, f"model '{name}' not found")
        return JSONResponse(
            {
                "modelfile": f"FROM {served.engine.path}\n",
                "parameters": f"num_ctx {served.engine.n_ctx}",
                "template": served.engine.metadata.get("tokenizer.chat_template", ""),
                "details": served.details(),
                "model_info": served.model_info(),
                "capabilities": ["completion", "tools"],
                "modified_at": served.modified_at,
            }
        )

    @app.post("/api/chat")
    async def chat(request: Request) -> Response:
        parsed = await parse(request, ChatRequest)
        if isinstance(parsed, JSONResponse):
            return parsed
        assert isinstance(parsed, ChatRequest)
        served = find(parsed.model)
        if served is None:
            return _error(404, f"model '{parsed.model}' not found")
        head = {"model": parsed.model, "created_at": _now()}
        if not parsed.messages:  # Ollama: an empty chat loads the model and answers at once.
            return JSONResponse({**head, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "load"})
        plan = _plan(parsed, tool_choice, default_max_tokens)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Event] = asyncio.Queue()
        loop.run_in_executor(None, _decode_in_thread, loop, queue, served.engine, plan)
        first = await queue.get()
        if first.kind == "error":
            return _error(500, first.text)
        if not parsed.stream:
            event, parts = first, []
            while event.kind == "text":
                parts.append(event.text)
                event = await queue.get()
            if event.kind == "error":
                return _error(500, event.text)
            text = (event.completion or {})["choices"][0]["message"]["content"]
            extra = {"logprobs": _logprobs(event)} if parsed.logprobs or parsed.top_logprobs else {}
            return JSONResponse({**head, "message": _reply_message(plan, text), **_stats(event), **extra})
        return StreamingResponse(_ndjson(plan, head, first, queue, bool(parsed.logprobs or parsed.top_logprobs)), media_type="application/x-ndjson")

    return app


async def _ndjson(
    plan: _Decode, head: dict[str, Any], first: _Event, queue: asyncio.Queue[_Event], logprobs: bool = False
) -> AsyncIterator[bytes]:
    """The NDJSON stream: text chunks (or one tool-call chunk), then the final `done` chunk."""

    def line(obj: Mapping[str, Any]) -> bytes:
        return (json.dumps(obj) + "\n").encode("utf-8")

    event = first
    while event.kind == "text":
        # A tool call is JSON under the hood: it goes out parsed, in one chunk, at the end.
        if not plan.tools:
            yield line({**head, "created_at": _now(), "message": {"role": "assistant", "content": event.text}, "done": False})
        event = await queue.get()
    if event.kind == "error":
        yield line({"error": event.text})
        return
    if plan.tools:
        text = (event.completion or {})["choices"][0]["message"]["content"]
        yield line({**head, "created_at": _now(), "message": _reply_message(plan, text), "done": False})
    final = {**head, "created_at": _now(), "message": {"role": "assistant", "content": ""}, **_stats(event)}
    if logprobs:
        final["logprobs"] = _logprobs(event)
    yield line(final)


# -- command line --------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_models(specs: Sequence[str], *, n_ctx: int, n_threads: int | None) -> dict[str, ServedModel]:
    """Load every `model_id[=name]` spec (an embedded model id or a .gguf path) now."""
    served: dict[str, ServedModel] = {}
    for spec in specs:
        model_id, _, alias = spec.partition("=")
        engine = get_engine(model_id, n_ctx=n_ctx, n_threads=n_threads)
        name = _full_name(alias or model_id)
        stat = engine.path.stat()
        served[name] = ServedModel(
            name=name,
            model_id=model_id,
            engine=engine,
            digest=_sha256(engine.path),
            size=stat.st_size,
            modified_at=datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat().replace("+00:00", "Z"),
        )
        log.info("serving %s as %s (loaded in %.2fs)", model_id, name, engine.load_seconds)
    return served


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers.ollama_protocol", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--model", action="append", required=True, metavar="ID[=NAME]",
        help="an embedded model id or .gguf path, optionally served under NAME (repeatable)",
    )
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--n-threads", type=int, default=None)
    parser.add_argument("--tool-choice", choices=["auto", "required"], default="auto")
    parser.add_argument("--max-tokens", type=int, default=512, help="when a request sets no num_predict")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    import uvicorn

    models = load_models(args.model, n_ctx=args.n_ctx, n_threads=args.n_threads)
    app = create_app(models, tool_choice=args.tool_choice, default_max_tokens=args.max_tokens)
    # A decode in progress is not interrupted by shutdown; don't also wait for its client.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
