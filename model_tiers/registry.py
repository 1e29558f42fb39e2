"""`TierRegistry`: ask for a tier by name, call it, get the answer and its `Usage` record.

Every model call in tierflow goes through `TierRegistry.call`, so every call is accounted
the same way, whatever the provider, and provider failures become typed errors:
`TierUnreachable` (a fault: fall through to the next tier) or `InvalidModelOutput` (a
misbehaving model: the verifier's business).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.caches import BaseCache
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ValidationError

from tierflow.model_tiers.call_cache import TierScopedCache, releasing_claims, tier_scope
from tierflow.model_tiers.errors import ConfigError, InvalidModelOutput, TierflowError, TierMisconfigured, TierUnreachable
from tierflow.model_tiers.ledger import CACHE_HIT_KEY, CACHE_SAVED_KEY, CONFIDENCE_KEY, Usage, estimate_tokens
from tierflow.model_tiers.ledger_store import record_call
from tierflow.model_tiers.provider_errors import classify_provider_error
from tierflow.model_tiers.providers import build_chat_model, get_provider, key_env_of
from tierflow.model_tiers.providers._tool_calling import ToolCallingChatModel, messages_as_text
from tierflow.model_tiers.providers.logprobs import confidence_from_openai_logprobs
from tierflow.model_tiers.secrets import redact, register_secrets_from_env
from tierflow.model_tiers.spec import TierConfig, TierSpec
from tierflow.model_tiers.tool_selection import needs_selection, select_then_call

__all__ = ["TierRegistry", "ModelReply"]

OutputKind = Literal["text", "structured", "tools"]


@dataclass(frozen=True)
class ModelReply:
    """What one call produced: the parsed value, the raw message and its ledger record."""

    value: Any
    message: AIMessage
    usage: Usage


def _message_usage(spec: TierSpec, message: AIMessage, prompt: Sequence[BaseMessage], latency: float) -> Usage:
    meta = message.usage_metadata
    response = message.response_metadata or {}
    confidence = response.get(CONFIDENCE_KEY)
    if confidence is None and response.get("logprobs") is not None:
        # ChatOpenAI and ChatOllama keep the server's token log-probabilities here.
        confidence = confidence_from_openai_logprobs(response["logprobs"])
    extra: dict[str, Any] = {
        "confidence": None if confidence is None else min(1.0, max(0.0, float(confidence))),
        "cache_hit": bool(response.get(CACHE_HIT_KEY, False)),
        "saved_s": float(response.get(CACHE_SAVED_KEY, 0.0)),
    }
    if meta and (meta.get("input_tokens") or meta.get("output_tokens")):
        return Usage.for_call(
            spec,
            input_tokens=int(meta.get("input_tokens", 0)),
            output_tokens=int(meta.get("output_tokens", 0)),
            latency_s=latency,
            # A model may fill in counts it estimated itself (the replay of a recording
            # without them) and say so here: the ledger must not present them as billed.
            tokens_estimated=bool(response.get("tokens_estimated", False)),
            **extra,
        )
    return Usage.for_call(
        spec,
        input_tokens=estimate_tokens(messages_as_text(prompt)),
        output_tokens=estimate_tokens(messages_as_text([message])),
        latency_s=latency,
        tokens_estimated=True,
        **extra,
    )


def _failed_call_usage(spec: TierSpec, prompt: Sequence[BaseMessage], started: float, error: str) -> Usage:
    """The ledger record of a request that reached the server but brought back no reply
    to read (an HTTP error, a timeout, an unreadable body): the prompt's tokens, estimated,
    are what a provider may bill, and what a budget must see."""
    return Usage.for_call(
        spec,
        input_tokens=estimate_tokens(messages_as_text(prompt)),
        output_tokens=0,
        latency_s=time.perf_counter() - started,
        tokens_estimated=True,
        error=error,
    )


def _unparsed(spec: TierSpec, raw: Any, prompt: Sequence[BaseMessage], started: float, error: Any) -> InvalidModelOutput:
    """The reply had no usable structured output: a model error that still cost tokens."""
    message = raw if isinstance(raw, AIMessage) else AIMessage(content=str(raw))
    text = message.content if isinstance(message.content, str) else json.dumps(message.content)
    finish = message.response_metadata.get("finish_reason")
    reason = error or (
        "no structured output in the reply" + (" (cut off at the output-token limit)" if finish == "length" else "")
    )
    usage = _message_usage(spec, message, prompt, time.perf_counter() - started).model_copy(update={"error": "invalid output"})
    return InvalidModelOutput(spec.name, redact(str(reason)[:500]), raw=redact(text[:2000]), usage=usage)


def _reject_invalid_calls(spec: TierSpec, raw: Any, prompt: Sequence[BaseMessage], started: float, *, any_call: bool = False) -> None:
    """A tool call whose arguments are not JSON is a wrong answer, not "no call": raise it
    as one (where there is no valid call beside it, unless `any_call`)."""
    if isinstance(raw, AIMessage) and raw.invalid_tool_calls and (any_call or not raw.tool_calls):
        bad = raw.invalid_tool_calls[0]
        reason = f"the tool call '{bad.get('name')}' has arguments that are not valid JSON: {str(bad.get('args'))[:200]!r}"
        raise _unparsed(spec, raw, prompt, started, reason)


def _strict_json(spec: TierSpec, raw: Any, prompt: Sequence[BaseMessage], started: float) -> Any:
    text = raw.content if isinstance(raw, AIMessage) and isinstance(raw.content, str) else ""
    fenced = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", text, flags=re.S)
    try:
        return json.loads(fenced.group(1) if fenced else text)
    except json.JSONDecodeError as err:
        raise _unparsed(spec, raw, prompt, started, f"the reply is not valid JSON ({err.msg} at offset {err.pos})") from None


def _validated(
    spec: TierSpec, schema: type[BaseModel], data: Any, raw: Any, prompt: Sequence[BaseMessage], started: float
) -> BaseModel:
    """`data` as an instance of `schema`, where it is one: a reply that names fields the
    schema does not have is a wrong answer (`{"delete_all_orders": true}` must not pass
    as "every optional field absent"), and so is one that does not validate."""
    if isinstance(data, Mapping):
        known = {f.alias or name for name, f in schema.model_fields.items()} | set(schema.model_fields)
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown and schema.model_config.get("extra") != "allow":
            raise _unparsed(spec, raw, prompt, started, f"the reply has fields the schema does not define: {unknown}")
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        raise _unparsed(spec, raw, prompt, started, err) from err


class TierRegistry:
    """Builds each tier's chat model once, lazily, and runs accounted calls on it."""

    def __init__(
        self, config: TierConfig, *, env: Mapping[str, str] | None = None, call_cache: BaseCache | None = None
    ) -> None:
        self.config = config
        self._env = dict(os.environ if env is None else env)
        # Models this registry builds answer identical calls from it (an eval run's cache).
        self._call_cache = call_cache
        self._models: dict[str, BaseChatModel] = {}
        self._slots = {t.name: threading.BoundedSemaphore(t.max_concurrency) for t in config.tiers}
        self._runnables: dict[tuple[Any, ...], Runnable[Any, Any]] = {}
        # tier -> (monotonic deadline, why): a tier cooling down after an outage.
        self._cooldowns: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()
        # Every key a tier reads is masked wherever tierflow prints or stores text.
        register_secrets_from_env({v for t in config.tiers if (v := key_env_of(t))}, self._env)

    def with_config(self, config: TierConfig) -> TierRegistry:
        """A registry for the same tiers under other policies (a run context's overrides).

        Built models and concurrency slots are shared, which is only sound while the tier
        specs themselves are unchanged; run contexts change policy, roles and budgets only.
        """
        if config.tiers != self.config.tiers:
            raise ValueError("with_config may change policies and roles, not the tiers themselves")
        other = TierRegistry.__new__(TierRegistry)
        other.config = config
        other._env = self._env
        other._call_cache = self._call_cache
        other._models = self._models
        other._slots = self._slots
        other._runnables = self._runnables
        other._cooldowns = self._cooldowns
        other._lock = self._lock
        return other

    def spec(self, tier: str) -> TierSpec:
        return self.config.tier(tier)

    def model(self, tier: str) -> BaseChatModel:
        with self._lock:
            if tier not in self._models:
                model = build_chat_model(self.spec(tier), env=self._env)
                if self._call_cache is not None:
                    # Scoped by tier and spec: some providers' cache keys name neither.
                    model.cache = TierScopedCache(self._call_cache, tier_scope(self.spec(tier)))
                self._models[tier] = model
            return self._models[tier]

    def set_model(self, tier: str, model: BaseChatModel) -> None:
        """Use `model` for `tier` (tests inject scripted models this way)."""
        self.spec(tier)
        with self._lock:
            self._models[tier] = model
            for key in [k for k in self._runnables if k[0] == tier]:
                del self._runnables[key]

    def call(
        self,
        tier: str,
        messages: Sequence[BaseMessage],
        *,
        schema: type[BaseModel] | None = None,
        tools: Sequence[Any] | None = None,
        tool_choice: str | None = "auto",
    ) -> ModelReply:
        """One accounted call. `schema` -> a validated instance; `tools` -> tool calls; else text.

        Raises `TierUnreachable` (fall back), `TierMisconfigured` (fix the tier) or
        `InvalidModelOutput` (the model's mistake); each carries the `Usage` of the request
        when one reached the server, so the ledger holds every call that was made.
        """
        spec = self.spec(tier)
        if schema is not None and spec.capabilities.structured_output == "none":
            # The ladder skips such a tier for steps with a schema; this is a direct call.
            raise ConfigError(
                f"tier '{tier}' declares no structured output (capabilities.structured_output = \"none\"), "
                f"so it cannot answer with {schema.__name__}; call a tier that has it"
            )
        self._check_cooldown(spec)
        model = self.model(tier)
        started = time.perf_counter()
        with self._slots[tier], releasing_claims():
            try:
                value, message = self._invoke(spec, model, list(messages), schema, tools, tool_choice, started)
            except InvalidModelOutput as err:
                if err.usage is None:
                    err.usage = _failed_call_usage(spec, messages, started, "invalid output")
                if isinstance(err.usage, Usage):
                    record_call(spec, self.config, err.usage)
                raise
            except TierflowError as err:
                if isinstance(failed := getattr(err, "usage", None), Usage):
                    record_call(spec, self.config, failed)
                raise
            except Exception as exc:
                typed = self._classified(spec, exc, messages, started)
                if typed is exc:
                    raise
                if isinstance(failed := getattr(typed, "usage", None), Usage):
                    record_call(spec, self.config, failed)  # a paid request that brought back no reply
                raise typed from exc
        usage = _message_usage(spec, message, messages, time.perf_counter() - started)
        record_call(spec, self.config, usage)
        return ModelReply(value=value, message=message, usage=usage)

    def _classified(self, spec: TierSpec, exc: Exception, messages: Sequence[BaseMessage], started: float) -> Exception:
        """The typed error for a provider exception (or the exception itself: a bug)."""
        failure = classify_provider_error(spec, exc, key_env=key_env_of(spec))
        if failure is None:
            if isinstance(exc, (ValidationError, json.JSONDecodeError, OutputParserException)):
                # The server answered with something no parser could read.
                invalid_usage = _failed_call_usage(spec, messages, started, "invalid output")
                return InvalidModelOutput(spec.name, redact(f"{type(exc).__name__}: {exc}")[:500], usage=invalid_usage)
            if spec.provider == "embedded" and isinstance(exc, ValueError) and "context window" in str(exc):
                return TierUnreachable(spec.name, f"the request does not fit this tier: {exc}")
            return exc
        label = f"HTTP {failure.status}" if failure.status else "transport"
        usage = _failed_call_usage(spec, messages, started, label) if failure.reached_server else None
        if failure.kind == "config":
            return TierMisconfigured(spec.name, failure.status or 0, failure.message, usage=usage)
        # Behind a server (the provider kind declares it), an outage outlasts one request: a cool-down pays.
        if failure.kind == "unavailable" and spec.cooldown_s > 0 and get_provider(spec.provider).capabilities.served:
            with self._lock:
                self._cooldowns[spec.name] = (time.monotonic() + spec.cooldown_s, failure.message)
        return TierUnreachable(spec.name, failure.message, usage=usage)

    def cooldown_left(self, tier: str) -> float:
        """Seconds before `tier` is sent requests again after an outage (0: it is not cooling down)."""
        with self._lock:
            entry = self._cooldowns.get(tier)
        return max(0.0, entry[0] - time.monotonic()) if entry else 0.0

    def _check_cooldown(self, spec: TierSpec) -> None:
        with self._lock:
            entry = self._cooldowns.get(spec.name)
            if entry is not None and entry[0] <= time.monotonic():
                del self._cooldowns[spec.name]
                entry = None
        if entry is not None:
            left = entry[0] - time.monotonic()
            raise TierUnreachable(spec.name, f"cooling down for {left:.0f}s more after: {entry[1]}")

    def _bound(self, key: tuple[Any, ...], build: Callable[[], Runnable[Any, Any]]) -> Runnable[Any, Any]:
        # Binding a schema or tools builds a runnable; once per (tier, schema) is enough.
        with self._lock:
            runnable = self._runnables.get(key)
            if runnable is None:
                runnable = self._runnables[key] = build()
            return runnable

    def _structured_runnable(self, spec: TierSpec, model: BaseChatModel, schema: type[BaseModel]) -> Runnable[Any, Any]:
        # The schema goes to the provider as a JSON-schema dict, not the pydantic class:
        # with a class, langchain-openai parses inside the client call, and a reply that
        # does not validate raises there with its raw message (and its usage) lost.
        method = spec.capabilities.structured_output

        def bind() -> Runnable[Any, Any]:
            as_dict = convert_to_openai_tool(schema) if method == "function_calling" else schema.model_json_schema()
            return model.with_structured_output(as_dict, method=method, include_raw=True)

        return self._bound((spec.name, "structured", schema, method), bind)

    def _forced_call(
        self, spec: TierSpec, model: BaseChatModel, schema: type[BaseModel], messages: list[BaseMessage], started: float
    ) -> tuple[Any, AIMessage]:
        """Structured output from our own models as one forced tool call, parsed here.

        LangChain's `include_raw` path runs the model on a fresh pool thread per call
        (twice the cost of an instant scripted call, and a new OpenMP team for llama.cpp);
        this runs on the calling thread with a runnable bound once.
        """
        def bind() -> Runnable[Any, Any]:
            name = convert_to_openai_tool(schema)["function"]["name"]
            return model.bind_tools([schema], tool_choice=name)

        runnable = self._bound((spec.name, "forced", schema), bind)
        raw = runnable.invoke(messages)
        _reject_invalid_calls(spec, raw, messages, started)
        if not isinstance(raw, AIMessage) or not raw.tool_calls:
            raise _unparsed(spec, raw, messages, started, None)
        return _validated(spec, schema, raw.tool_calls[0]["args"], raw, messages, started), raw

    def _invoke(
        self,
        spec: TierSpec,
        model: BaseChatModel,
        messages: list[BaseMessage],
        schema: type[BaseModel] | None,
        tools: Sequence[Any] | None,
        tool_choice: str | None,
        started: float,
    ) -> tuple[Any, AIMessage]:
        def structured(model: BaseChatModel, schema: type[BaseModel], messages: list[BaseMessage]) -> tuple[Any, AIMessage]:
            if isinstance(model, ToolCallingChatModel):
                return self._forced_call(spec, model, schema, messages, started)
            out = self._structured_runnable(spec, model, schema).invoke(messages)
            raw = out["raw"]
            _reject_invalid_calls(spec, raw, messages, started)
            if out.get("parsing_error") is not None or out.get("parsed") is None:
                raise _unparsed(spec, raw, messages, started, out.get("parsing_error"))
            parsed = out["parsed"]
            if spec.capabilities.structured_output != "function_calling":
                # LangChain's JSON parser completes a truncated object; a reply cut off
                # mid-value is not an answer, so the text must parse as it is.
                parsed = _strict_json(spec, raw, messages, started)
            return _validated(spec, schema, parsed, raw, messages, started), raw

        if schema is not None:
            return structured(model, schema, messages)
        if tools:
            if not spec.capabilities.tools:
                raise InvalidModelOutput(spec.name, "this tier does not support tool calls")
            if spec.capabilities.tool_choice == "named" and needs_selection(tools, tool_choice):
                return select_then_call(model, messages, tools, tool_choice, structured)
            message = model.bind_tools(list(tools), tool_choice=tool_choice).invoke(messages)
            _reject_invalid_calls(spec, message, messages, started, any_call=True)
            return list(message.tool_calls), message
        message = model.invoke(messages)
        text = message.content if isinstance(message.content, str) else json.dumps(message.content)
        return text, message
