"""The embedded provider: real GGUF models run in-process by llama-cpp-python.

One `EmbeddedEngine` per model file per process, created on first use (after its file's
SHA-256 check, `model_files`) and shared by every chat model that names it. Every load and
decode of the process runs on one inference thread, one at a time (see `run_inference`),
and honours the tier's `timeout_s`. Structured output and tool calls are decoded under a
JSON-schema grammar, capped at the longest reply the schema admits, so what comes back
parses unless it was cut off; whether it is *right* is the verifier's job.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field

from tierflow.model_tiers.errors import ConfigError, MissingDependency
from tierflow.model_tiers.ledger import CONFIDENCE_KEY
from tierflow.model_tiers.providers._tool_calling import ToolCallingChatModel, forced_tool_name
from tierflow.model_tiers.providers.logprobs import confidence_from_openai_logprobs
from tierflow.model_tiers.providers.model_files import MODEL_FILES, check_adapter_file, verified_model_path
from tierflow.model_tiers.providers.tool_prompts import NO_TOOL, tool_call_schema, tools_prompt

T = TypeVar("T")

__all__ = [
    "EmbeddedTimeout",
    "run_inference",
    "NO_TOOL",
    "TokenChoice",
    "ChosenToken",
    "EmbeddedEngine",
    "EmbeddedChatModel",
    "get_engine",
    "embedded_chat",
    "fold_system",
    "grammar_for",
    "grammar_safe_schema",
    "max_output_chars",
    "resolve_model_path",
    "tool_call_schema",
    "tools_prompt",
]


def resolve_model_path(model: str) -> tuple[Path, str | None, bool]:
    """Map a model id (or a path to any .gguf file) to (file, chat_format, fold_system).

    A known model id is assembled if needed and checked against its published SHA-256
    (`model_files`); a path the user names is theirs to vouch for.
    """
    if model in MODEL_FILES:
        known = MODEL_FILES[model]
        return verified_model_path(model), known.chat_format, known.fold_system
    path = Path(model).expanduser()
    if path.suffix != ".gguf":
        raise ConfigError(
            f"unknown embedded model '{model}': use one of {', '.join(MODEL_FILES)} or a path to a .gguf file"
        )
    if not path.is_file():
        raise ConfigError(f"embedded model file not found: {path}")
    return path, None, False


# GNU OpenMP's workers spin for GOMP_SPINCOUNT iterations (300,000 by default) before they
# sleep. Under another process's load on 2 cores that spinning collapsed a 0.5 s SmolLM2
# call to 1.2-17.6 s; with 10,000 it stayed at 0.5 s (evals/bench/openmp.py). libgomp reads
# the variable once, when llama.cpp's library loads, so it is set before the first import;
# a value the user set wins.
GOMP_SPINCOUNT = "10000"


def _llama_cpp() -> Any:
    os.environ.setdefault("GOMP_SPINCOUNT", GOMP_SPINCOUNT)
    try:
        import llama_cpp
    except ImportError:
        raise MissingDependency("llama-cpp-python", extra="embedded", purpose="embedded models") from None
    return llama_cpp


class EmbeddedTimeout(TimeoutError):
    """An embedded call ran past its tier's `timeout_s` (a fault: the next tier takes over)."""


# Every llama.cpp call of the process runs on this one OS thread, one call at a time.
# llama.cpp's GNU OpenMP keeps a team of worker threads per *calling* thread: calls made
# from LangGraph's and LangChain's pool threads started a new team each time, and two
# models decoding at once put two spinning teams on 2 cores (a 0.4 s call measured 10-27 s).
# One inference thread means one team, and its queue is the process-wide inference slot.
_INFERENCE: ThreadPoolExecutor | None = None
_INFERENCE_LOCK = threading.Lock()


def _inference_thread() -> ThreadPoolExecutor:
    global _INFERENCE
    with _INFERENCE_LOCK:
        if _INFERENCE is None:
            _INFERENCE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tierflow-llama")
        return _INFERENCE


def run_inference(fn: Callable[[], T]) -> T:
    """Run `fn` on the process's inference thread and wait for its result."""
    if threading.current_thread().name.startswith("tierflow-llama"):
        return fn()  # already on it (an engine loading inside a call)
    return _inference_thread().submit(fn).result()


@dataclass(frozen=True)
class TokenChoice:
    """One token as decoded: its text, its bytes (a token may hold part of a character) and
    its natural-log probability under the model, before any grammar's mask."""

    token: str
    raw: bytes
    logprob: float


@dataclass(frozen=True)
class ChosenToken:
    """A generated token and, when asked for, the most likely tokens at its position."""

    chosen: TokenChoice
    alternatives: tuple[TokenChoice, ...] = ()


class EmbeddedEngine:
    """A loaded GGUF model plus the lock that makes it safe to share between threads."""

    def __init__(
        self,
        model: str,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        seed: int = 0,
        adapter: str | None = None,
    ) -> None:
        Llama = _llama_cpp().Llama
        path, chat_format, fold = resolve_model_path(model)
        self.model = model
        self.path = path
        self.fold_system = fold
        # None: the GGUF's own chat template renders the turns, any role included ("tool");
        # a llama.cpp format name (e.g. "gemma") knows only system, user and assistant turns.
        self.chat_format = chat_format
        self.n_ctx = n_ctx
        self.adapter = None if adapter is None else Path(adapter).expanduser()
        if self.adapter is not None:
            check_adapter_file(str(self.adapter))
        started = time.perf_counter()

        def load() -> Any:
            try:
                return Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads or max(1, os.cpu_count() or 1),
                    chat_format=chat_format,
                    seed=seed,
                    verbose=False,
                    lora_path=None if self.adapter is None else str(self.adapter),
                )
            except (ValueError, RuntimeError) as err:
                if self.adapter is None:
                    raise
                # llama.cpp rejects an adapter trained for another base model (tensor shapes).
                raise ConfigError(f"the LoRA adapter {self.adapter} does not load on {model}: {err}") from None

        self._llama = run_inference(load)
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
        on_token: Callable[[ChosenToken], None] | None = None,
        top_logprobs: int = 0,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """One chat completion (OpenAI-shaped dict), grammar-constrained when a schema is given.

        It runs on the process's inference thread. `timeout_s` counts from the moment the
        call starts there (time queued behind other calls of this process is not the
        model's: with an eval's concurrent cases it made SmolLM2 calls time out); a decode
        past it stops at its next token and raises `EmbeddedTimeout`. With `on_text`, every
        text delta is passed to it as it is decoded (servers stream it); the return value
        is the same. With `on_token`, every generated token is passed to it with its
        log-probability (and its `top_logprobs` most likely alternatives) as soon as it is
        known: one step after its text, since the sampled token is seen at the next step.
        """
        if self.fold_system:
            messages = fold_system(messages)
        grammar = grammar_for(json_schema) if json_schema else None

        def run() -> dict[str, Any]:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            with self._lock:
                return self._decode(messages, grammar, max_tokens, temperature, stop, on_text, on_token, top_logprobs, deadline)

        completion = run_inference(run)
        if completion["choices"][0]["finish_reason"] == "timeout":
            raise EmbeddedTimeout(f"the embedded call ran past timeout_s={timeout_s:g}")
        return completion

    def _chosen_token(self, token: int, logprob: float, logits: Any, normaliser: float, top: int) -> ChosenToken:
        alternatives: tuple[TokenChoice, ...] = ()
        if top > 0:
            count = min(top, len(logits))
            best = numpy.argpartition(-logits, count - 1)[:count]
            ranked = sorted((int(i) for i in best), key=lambda i: -float(logits[i]))
            alternatives = tuple(self._token_choice(i, float(logits[i]) - normaliser) for i in ranked)
        return ChosenToken(self._token_choice(token, logprob), alternatives)

    def _token_choice(self, token: int, logprob: float) -> TokenChoice:
        raw = self._llama.detokenize([token])
        return TokenChoice(raw.decode("utf-8", errors="replace"), raw, logprob)

    def _decode(
        self,
        messages: list[dict[str, str]],
        grammar: Any,
        max_tokens: int,
        temperature: float,
        stop: list[str] | None,
        on_text: Callable[[str], None] | None,
        on_token: Callable[[ChosenToken], None] | None,
        top_logprobs: int,
        deadline: float | None,
    ) -> dict[str, Any]:
        # Called with the lock held, on the inference thread. Always streamed, so a call
        # past its deadline stops at the next token instead of running to max_tokens.
        LogitsProcessorList = _llama_cpp().LogitsProcessorList

        # llama.cpp streams no usage. The prompt length is the context length at the first
        # sampling step; the context ends holding prompt + every generated token except the
        # last one when the decode stopped at max_tokens (sampled, never fed back).
        prompt_len: list[int] = []
        # The model's own log-probability of each token it chose (before the grammar's mask):
        # a step's scores are kept until the next step shows which token was sampled.
        chosen: list[tuple[int, float]] = []
        previous: list[tuple[Any, float]] = []
        # A callback's error is re-raised once the decode is over (not inside llama.cpp's loop).
        callback_errors: list[Exception] = []

        def note_prompt_length(input_ids: Any, scores: Any) -> Any:
            if not prompt_len:
                prompt_len.append(len(input_ids))
            elif previous:
                logits, normaliser = previous.pop()
                token = int(input_ids[-1])
                logprob = float(logits[token]) - normaliser
                chosen.append((token, logprob))
                if on_token is not None and not callback_errors:
                    try:
                        on_token(self._chosen_token(token, logprob, logits, normaliser, top_logprobs))
                    except Exception as err:
                        callback_errors.append(err)
            top = float(scores.max())
            previous.append((scores.copy(), top + math.log(float(numpy.exp(scores - top).sum()))))
            return scores

        chunks = self._llama.create_chat_completion(
            messages=messages,
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
        for chunk in chunks:
            completion_id = chunk.get("id", completion_id)
            choice = chunk["choices"][0]
            finish_reason = choice.get("finish_reason") or finish_reason
            delta = choice.get("delta", {}).get("content")
            if delta:
                parts.append(delta)
                if on_text is not None and not callback_errors:
                    try:
                        on_text(delta)
                    except Exception as err:
                        callback_errors.append(err)
            if deadline is not None and time.monotonic() > deadline:
                finish_reason = "timeout"
                chunks.close()
                break
        if callback_errors:
            raise callback_errors[0]
        text = "".join(parts)
        token_logprobs = [
            {"token": self._llama.detokenize([token]).decode("utf-8", errors="replace"), "logprob": logprob}
            for token, logprob in chosen
        ]
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
                    "logprobs": {"content": token_logprobs},
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def grammar_for(schema: Mapping[str, Any]) -> Any:
    """The grammar that constrains a decode to `schema`, or None where llama.cpp's schema
    converter cannot express it (`not`, a `pattern` without ^...$, a type it does not
    know): the decode is then unconstrained, and the reply is still validated against the
    schema by the caller, so a wrong shape becomes a failed verdict, never a crash."""
    try:
        return _grammar(json.dumps(schema, sort_keys=True))
    except (AssertionError, ValueError, KeyError, TypeError, NotImplementedError, RecursionError):
        return None


@lru_cache(maxsize=256)
def _grammar(schema_json: str) -> Any:
    LlamaGrammar = _llama_cpp().LlamaGrammar

    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema = grammar_safe_schema(json.loads(schema_json))
    gbnf = json_schema_to_gbnf(json.dumps(schema))
    # llama-cpp-python's string rule admits raw control characters, which JSON forbids:
    # SmolLM2 was measured rambling on in newlines inside one string to the token limit.
    # This is llama.cpp's own rule (grammars/json.gbnf).
    gbnf = gbnf.replace(_LOOSE_CHAR_RULE, _JSON_CHAR_RULE)
    return LlamaGrammar.from_string(gbnf, verbose=False)


_LOOSE_CHAR_RULE = r'char ::= [^"\\] |'
_JSON_CHAR_RULE = r'char ::= [^"\\\x7F\x00-\x1F] |'


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


_SCALAR_CHARS = {"boolean": 5, "null": 4, "integer": 20, "number": 40}


def max_output_chars(schema: Any, defs: Mapping[str, Any] | None = None) -> int | None:
    """The longest compact JSON text `schema` admits, or None when it is unbounded.

    Counts one separator character per key and item (the grammar's optional space);
    strings count their `maxLength`, so a schema whose strings have none is unbounded.
    """
    if not isinstance(schema, Mapping):
        return None
    defs = {**(defs or {}), **schema.get("$defs", {})}
    if "$ref" in schema:
        target = defs.get(str(schema["$ref"]).rsplit("/", 1)[-1])
        return max_output_chars(target, defs)
    if "const" in schema:
        return len(json.dumps(schema["const"]))
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"]) if schema["enum"] else None
    for key in ("anyOf", "oneOf"):
        if key in schema:
            sizes = [max_output_chars(option, defs) for option in schema[key]]
            return None if not sizes or None in sizes else max(s for s in sizes if s is not None)
    kind = schema.get("type")
    if isinstance(kind, list):
        sizes = [max_output_chars({**schema, "type": k}, defs) for k in kind]
        return None if None in sizes else max(s for s in sizes if s is not None)
    if kind == "string":
        limit = schema.get("maxLength")
        # format-constrained strings (date, time, uuid...) are short by construction
        return int(limit) + 2 if isinstance(limit, int) else (40 if "format" in schema else None)
    if kind in _SCALAR_CHARS:
        return _SCALAR_CHARS[kind]
    if kind == "array":
        items, most = max_output_chars(schema.get("items", {}), defs), schema.get("maxItems")
        return None if items is None or not isinstance(most, int) else 2 + most * (items + 2)
    if kind == "object" or "properties" in schema:
        if schema.get("additionalProperties") not in (None, False):
            return None
        total = 2
        for name, sub in schema.get("properties", {}).items():
            size = max_output_chars(sub, defs)
            if size is None:
                return None
            total += len(json.dumps(name)) + size + 3
        return total
    return None


def fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest
    if rest and rest[0]["role"] == "user":
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    else:
        rest.insert(0, {"role": "user", "content": system})
    return rest


_ENGINES: dict[tuple[str, int, str | None], EmbeddedEngine] = {}
_ENGINES_LOCK = threading.Lock()


def _close_engines() -> None:
    # Runs at exit, before the interpreter tears down llama_cpp's module globals: a Llama
    # freed after that prints a TypeError traceback from its __del__ for every engine.
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        engine.close()


def get_engine(
    model: str, *, n_ctx: int = 4096, n_threads: int | None = None, adapter: str | None = None
) -> EmbeddedEngine:
    """The process-wide engine for `model` (with `adapter` applied), loaded on first use."""
    key = (model, n_ctx, adapter)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            if not _ENGINES:
                atexit.unregister(_close_engines)  # registered once, however often the cache empties
                atexit.register(_close_engines)
            engine = _ENGINES[key] = EmbeddedEngine(model, n_ctx=n_ctx, n_threads=n_threads, adapter=adapter)
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


def embedded_chat(
    messages: Sequence[BaseMessage],
    tools: Sequence[dict[str, Any]] | None,
    tool_choice: Any,
    *,
    describe_schema: bool = True,
) -> tuple[list[dict[str, str]], dict[str, Any] | None, str | None]:
    """(chat turns, grammar schema, forced tool) exactly as an embedded tier is sent them.

    Fine-tuning renders its training prompts through this too, so a tier is trained on
    what it will be served. With `describe_schema=False` (a tier fine-tuned on compact
    prompts) the tools / fields are not described in a system turn; the grammar still
    enforces them.
    """
    chat = _to_chat_dicts(messages)
    schema = None
    forced = None
    if tools and tool_choice != "none":
        forced = forced_tool_name(tools, tool_choice)
        allow_none = tool_choice in (None, "auto")
        schema = tool_call_schema(tools, forced, allow_none)
        if describe_schema:
            chat.insert(0, {"role": "system", "content": tools_prompt(tools, forced, allow_none)})
    return chat, schema, forced


class EmbeddedChatModel(ToolCallingChatModel):
    """LangChain chat model over an in-process `EmbeddedEngine`."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str
    tier: str = "embedded"
    temperature: float = 0.0
    max_tokens: int = 256
    n_ctx: int = 4096
    n_threads: int | None = None
    timeout_s: float | None = None
    adapter: str | None = None
    describe_schema: bool = True
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def _llm_type(self) -> str:
        return "tierflow-embedded"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "adapter": self.adapter, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _answer(
        self, messages: list[BaseMessage], tools: list[dict[str, Any]], tool_choice: Any, stop: list[str] | None
    ) -> ChatResult:
        engine = get_engine(self.model, n_ctx=self.n_ctx, n_threads=self.n_threads, adapter=self.adapter)
        chat, schema, forced = embedded_chat(messages, tools, tool_choice, describe_schema=self.describe_schema)
        bound = max_output_chars(schema) if schema is not None else None
        completion = engine.chat(
            chat,
            json_schema=schema,
            # A token is at least one character, so the longest reply the schema allows
            # bounds the decode: a runaway string or number cannot burn the tier's limit.
            max_tokens=self.max_tokens if bound is None else max(8, min(self.max_tokens, bound)),
            temperature=self.temperature,
            stop=stop,
            timeout_s=self.timeout_s,
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
            usage_metadata=usage_metadata,
            response_metadata={
                "model_name": self.model,
                "finish_reason": choice.get("finish_reason"),
                CONFIDENCE_KEY: confidence_from_openai_logprobs(choice.get("logprobs")),
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
