"""An HTTP server that speaks Ollama's API, backed by the embedded llama.cpp engine.

No Ollama binary can be installed where the tests run, so the `ollama` provider path
(ChatOllama and the `ollama` client) is tested against this server instead:

    python -m tests.servers.ollama_protocol --port 11435 --model smollm2-135m-instruct=smollm2:135m

Endpoints, shaped as in Ollama's API documentation: `GET /`, `GET /api/version`,
`GET /api/tags`, `GET /api/ps`, `POST /api/show`, `POST /api/chat` (NDJSON stream by
default, one object with `"stream": false`; `format` = "json" or a JSON schema, decoded
under a llama.cpp grammar; `options.num_predict`, `options.temperature`, `options.stop`).
Errors are `{"error": "..."}`; an unknown model is HTTP 404 `model '<name>' not found`.

As Ollama does:

* `tools` leave the decision to the model. It answers in JSON, one of the offered tools'
  calls or the pseudo-tool `no_tool` whose `reply` is plain text (a grammar keeps the
  JSON well-formed, where Ollama's parser would read the call out of the model's text);
  the model's choice comes back as `message.tool_calls` or as `message.content`.
* A `role: "tool"` message (with its `tool_name`) reaches the model as a tool turn of its
  chat template (`<|im_start|>tool` for SmolLM2's ChatML). Only a model under one of
  llama.cpp's named chat formats, which know no tool role, gets it as a user turn that
  names the tool.
* `logprobs: true` (and `top_logprobs: N`) return, in every streamed chunk, the tokens
  whose text that chunk carries: `{"token", "logprob", "bytes"[, "top_logprobs"]}`; a
  reply that is not streamed has them all in its one object.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tierflow.model_tiers.providers.embedded import (
    NO_TOOL,
    ChosenToken,
    EmbeddedEngine,
    TokenChoice,
    get_engine,
    tool_call_schema,
    tools_prompt,
)

__all__ = ["ServedModel", "ChatMessage", "ChatRequest", "create_app", "engine_messages", "plan_decode", "load_models", "main"]

SERVER_VERSION = "0.0.0-tierflow-test"

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

    def listed(self) -> dict[str, Any]:
        """The fields /api/tags and /api/ps share for a model."""
        return {"name": self.name, "model": self.name, "size": self.size, "digest": self.digest, "details": self.details()}

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
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


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
    # Ollama >= 0.12.11: the chosen tokens' log-probabilities, chunk by chunk.
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


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
    max_tokens: int
    temperature: float
    stop: list[str] | None
    logprobs: bool
    top_logprobs: int


def engine_messages(messages: Sequence[ChatMessage], chat_format: str | None) -> list[dict[str, str]]:
    """The chat turns the engine renders with the model's chat template (`chat_format` None)
    or one of llama.cpp's named formats."""
    out: list[dict[str, str]] = []
    for m in messages:
        text = m.content or ""
        if m.role == "assistant" and m.tool_calls:
            # The call as the model was asked to write it (tools_prompt): SmolLM2's template
            # has no syntax of its own for tool calls.
            fn = m.tool_calls[0].get("function", {})
            text = json.dumps({"name": fn.get("name"), "arguments": fn.get("arguments", {})})
        if m.role == "tool" and chat_format is not None:
            # llama.cpp's named chat formats drop a turn of any other role than system, user or assistant.
            named = f" of {m.tool_name}" if m.tool_name else ""
            out.append({"role": "user", "content": f"Result{named}: {text}"})
        elif m.role == "tool":
            # The chat template renders the tool turn; tool_name goes with it for a template that uses it.
            out.append({"role": "tool", "content": text, **({"tool_name": m.tool_name} if m.tool_name else {})})
        else:
            out.append({"role": m.role, "content": text})
    return out


def plan_decode(req: ChatRequest, chat_format: str | None, default_max_tokens: int) -> _Decode:
    """What the engine is asked for one chat request (`chat_format`: the model's, see `engine_messages`)."""
    messages = engine_messages(req.messages, chat_format)
    tools = [t for t in (req.tools or []) if isinstance(t.get("function"), dict)]
    schema: dict[str, Any] | None = None
    if tools:
        # Ollama has no tool_choice: the model may always answer without a call.
        schema = tool_call_schema(tools, None, allow_none=True)
        messages.insert(0, {"role": "system", "content": tools_prompt(tools, None, allow_none=True)})
    elif req.format == "json":
        schema = {"type": "object"}
    elif isinstance(req.format, dict):
        schema = req.format
    num_predict = req.options.num_predict
    top = req.top_logprobs or 0
    return _Decode(
        messages=messages,
        json_schema=schema,
        tools=tools,
        max_tokens=num_predict if num_predict is not None and num_predict > 0 else default_max_tokens,
        # Ollama's default temperature.
        temperature=0.8 if req.options.temperature is None else req.options.temperature,
        stop=req.options.stop,
        # As Ollama does, top_logprobs alone turns log-probabilities on.
        logprobs=bool(req.logprobs) or top > 0,
        top_logprobs=top,
    )


def _reply_message(plan: _Decode, text: str) -> dict[str, Any]:
    """The assistant message: plain content, or the tool call the model chose (parsed from
    the grammar-bound JSON), or its text when it chose no tool."""
    if not plan.tools:
        return {"role": "assistant", "content": text}
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        # Cut off by num_predict before the JSON closed: hand back the raw text, as Ollama
        # does when a model's tool call does not parse; the client decides what that means.
        return {"role": "assistant", "content": text}
    name, args = data["name"], data["arguments"]
    if name == NO_TOOL:
        return {"role": "assistant", "content": str(args.get("reply", ""))}
    return {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": name, "arguments": args}}]}


@dataclass(frozen=True)
class _Event:
    kind: Literal["text", "token", "done", "error"]
    text: str = ""
    token: ChosenToken | None = None
    completion: Mapping[str, Any] | None = None
    first_token_ns: int = 0
    elapsed_ns: int = 0


def _decode_in_thread(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[_Event], engine: EmbeddedEngine, plan: _Decode
) -> None:
    """Runs in a worker thread: decode, pushing text deltas (and, when log-probabilities are
    asked for, each token as its probability becomes known), then one `done` or `error`."""
    started = time.perf_counter_ns()
    first: list[int] = []

    def on_text(delta: str) -> None:
        if not first:
            first.append(time.perf_counter_ns() - started)
        loop.call_soon_threadsafe(queue.put_nowait, _Event("text", text=delta))

    def on_token(token: ChosenToken) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, _Event("token", token=token))

    try:
        completion = engine.chat(
            plan.messages,
            json_schema=plan.json_schema,
            max_tokens=plan.max_tokens,
            temperature=plan.temperature,
            stop=plan.stop,
            on_text=on_text,
            on_token=on_token if plan.logprobs else None,
            top_logprobs=plan.top_logprobs,
        )
    except Exception as err:
        log.exception("decode failed")
        loop.call_soon_threadsafe(queue.put_nowait, _Event("error", text=f"{type(err).__name__}: {err}"))
        return
    elapsed = time.perf_counter_ns() - started
    event = _Event("done", completion=completion, first_token_ns=first[0] if first else elapsed, elapsed_ns=elapsed)
    loop.call_soon_threadsafe(queue.put_nowait, event)


def _choice_json(choice: TokenChoice) -> dict[str, Any]:
    return {"token": choice.token, "logprob": choice.logprob, "bytes": list(choice.raw)}


def _logprob_json(token: ChosenToken, top_logprobs: int) -> dict[str, Any]:
    """One entry of Ollama's `logprobs`: the chosen token, and its alternatives when asked."""
    entry = _choice_json(token.chosen)
    if top_logprobs:
        entry["top_logprobs"] = [_choice_json(alt) for alt in token.alternatives]
    return entry


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


def create_app(models: Mapping[str, ServedModel], *, default_max_tokens: int = 512) -> FastAPI:
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
            "models": [{**m.listed(), "modified_at": m.modified_at} for m in models.values()]
        }

    @app.get("/api/ps")
    async def ps() -> dict[str, Any]:
        return {
            "models": [
                {
                    **m.listed(),
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
        plan = plan_decode(parsed, served.engine.chat_format, default_max_tokens)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Event] = asyncio.Queue()
        loop.run_in_executor(None, _decode_in_thread, loop, queue, served.engine, plan)
        event = await queue.get()
        if event.kind == "error":  # before any output: an HTTP error, as Ollama's for a failed load
            return _error(500, event.text)
        if parsed.stream:
            return StreamingResponse(_ndjson(plan, head, event, queue), media_type="application/x-ndjson")
        tokens: list[ChosenToken] = []
        while event.kind in ("text", "token"):
            if event.token is not None:
                tokens.append(event.token)
            event = await queue.get()
        if event.kind == "error":
            return _error(500, event.text)
        text = (event.completion or {})["choices"][0]["message"]["content"]
        body = {**head, "message": _reply_message(plan, text), **_stats(event)}
        if plan.logprobs:
            body["logprobs"] = [_logprob_json(t, plan.top_logprobs) for t in tokens]
        return JSONResponse(body)

    return app


async def _ndjson(plan: _Decode, head: dict[str, Any], first: _Event, queue: asyncio.Queue[_Event]) -> AsyncIterator[bytes]:
    """The NDJSON stream: text chunks (or one chunk with the model's tool call or its
    reply without one), then the final `done` chunk with the counts.

    With log-probabilities, a chunk's text waits for its token's probability (known one
    decode step later), so that each chunk carries the tokens of its own text.
    """

    def line(message: Mapping[str, Any], tokens: Sequence[ChosenToken]) -> bytes:
        chunk: dict[str, Any] = {**head, "created_at": _now(), "message": message, "done": False}
        if plan.logprobs and tokens:
            chunk["logprobs"] = [_logprob_json(t, plan.top_logprobs) for t in tokens]
        return (json.dumps(chunk) + "\n").encode("utf-8")

    text, tokens = "", list[ChosenToken]()
    event = first
    while event.kind in ("text", "token"):
        if event.kind == "text":
            text += event.text
        elif event.token is not None:
            tokens.append(event.token)
        # A tool call is JSON under the hood: it goes out parsed, in one chunk, at the end.
        ready = bool(text) and (bool(tokens) or not plan.logprobs)
        if ready and not plan.tools:
            yield line({"role": "assistant", "content": text}, tokens)
            text, tokens = "", []
        event = await queue.get()
    if event.kind == "error":
        yield (json.dumps({"error": event.text}) + "\n").encode("utf-8")
        return
    if plan.tools:
        whole = (event.completion or {})["choices"][0]["message"]["content"]
        yield line(_reply_message(plan, whole), tokens)
    elif text or tokens:
        # The last text (its token's probability comes with no further step when the decode
        # stops at num_predict) or tokens whose text llama.cpp held back.
        yield line({"role": "assistant", "content": text}, tokens)
    final = {**head, "created_at": _now(), "message": {"role": "assistant", "content": ""}, **_stats(event)}
    yield (json.dumps(final) + "\n").encode("utf-8")


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
            modified_at=datetime.fromtimestamp(stat.st_mtime, UTC).isoformat().replace("+00:00", "Z"),
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
    parser.add_argument("--max-tokens", type=int, default=512, help="when a request sets no num_predict")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    import uvicorn

    models = load_models(args.model, n_ctx=args.n_ctx, n_threads=args.n_threads)
    app = create_app(models, default_max_tokens=args.max_tokens)
    # A decode in progress is not interrupted by shutdown; don't also wait for its client.
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
