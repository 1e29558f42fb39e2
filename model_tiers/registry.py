"""`TierRegistry`: ask for a tier by name, call it, get the answer and its `Usage` record.

Every model call in tierflow goes through `TierRegistry.call`, so every call is accounted
the same way, whatever the provider, and provider failures become typed errors:
`TierUnreachable` (a fault: fall through to the next tier) or `InvalidModelOutput` (a
misbehaving model: the verifier's business).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ValidationError

from model_tiers.errors import InvalidModelOutput, TierflowError, TierUnreachable
from model_tiers.ledger import Usage, estimate_tokens
from model_tiers.providers import build_chat_model
from model_tiers.providers._tool_calling import ToolCallingChatModel, messages_as_text
from model_tiers.spec import TierConfig, TierSpec
from model_tiers.tool_selection import needs_selection, select_then_call

__all__ = ["TierRegistry", "ModelReply", "is_unreachable_error"]

OutputKind = Literal["text", "structured", "tools"]

# Exception class names (anywhere in the MRO) that mean "the endpoint did not answer".
# Matched by name so this module needs none of the optional provider packages.
_UNREACHABLE_NAMES = frozenset(
    {
        "ConnectError",
        "ConnectTimeout",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "TimeoutException",
        "RemoteProtocolError",
        "APIConnectionError",
        "APITimeoutError",
        "InternalServerError",
        "ServiceUnavailableError",
        "NotFoundError",
    }
)


def is_unreachable_error(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & _UNREACHABLE_NAMES:
        return True
    # The ollama client raises ResponseError with the HTTP status for server-side failures.
    status = getattr(exc, "status_code", None)
    return "ResponseError" in names and isinstance(status, int) and (status >= 500 or status == 404)


@dataclass(frozen=True)
class ModelReply:
    """What one call produced: the parsed value, the raw message and its ledger record."""

    value: Any
    message: AIMessage
    usage: Usage


def _message_usage(spec: TierSpec, message: AIMessage, prompt: Sequence[BaseMessage], latency: float) -> Usage:
    meta = message.usage_metadata or {}
    if meta.get("input_tokens") or meta.get("output_tokens"):
        return Usage.for_call(
            spec,
            input_tokens=int(meta.get("input_tokens", 0)),
            output_tokens=int(meta.get("output_tokens", 0)),
            latency_s=latency,
        )
    return Usage.for_call(
        spec,
        input_tokens=estimate_tokens(messages_as_text(prompt)),
        output_tokens=estimate_tokens(messages_as_text([message])),
        latency_s=latency,
        tokens_estimated=True,
    )


def _unparsed(spec: TierSpec, raw: Any, prompt: Sequence[BaseMessage], started: float, error: Any) -> InvalidModelOutput:
    """The reply had no usable structured output: a model error that still cost tokens."""
    message = raw if isinstance(raw, AIMessage) else AIMessage(content=str(raw))
    text = message.content if isinstance(message.content, str) else json.dumps(message.content)
    finish = message.response_metadata.get("finish_reason")
    reason = error or (
        "no structured output in the reply" + (" (cut off at the output-token limit)" if finish == "length" else "")
    )
    return InvalidModelOutput(
        spec.name, str(reason)[:500], raw=text[:2000], usage=_message_usage(spec, message, prompt, time.perf_counter() - started)
    )


class TierRegistry:
    """Builds each tier's chat model once, lazily, and runs accounted calls on it."""

    def __init__(self, config: TierConfig, *, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self._env = dict(os.environ if env is None else env)
        self._models: dict[str, BaseChatModel] = {}
        self._slots = {t.name: threading.BoundedSemaphore(t.max_concurrency) for t in config.tiers}
        self._runnables: dict[tuple[Any, ...], Runnable[Any, Any]] = {}
        self._lock = threading.Lock()

    def with_config(self, config: TierConfig) -> "TierRegistry":
        """A registry for the same tiers under other policies (a run context's overrides).

        Built models and concurrency slots are shared, which is only sound while the tier
        specs themselves are unchanged; run contexts change policy, roles and budgets only.
        """
        if config.tiers != self.config.tiers:
            raise ValueError("with_config may change policies and roles, not the tiers themselves")
        other = TierRegistry.__new__(TierRegistry)
        other.config = config
        other._env = self._env
        other._models = self._models
        other._slots = self._slots
        other._runnables = self._runnables
        other._lock = self._lock
        return other

    def spec(self, tier: str) -> TierSpec:
        return self.config.tier(tier)

    def model(self, tier: str) -> BaseChatModel:
        with self._lock:
            if tier not in self._models:
                self._models[tier] = build_chat_model(self.spec(tier), env=self._env)
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
        """One accounted call. `schema` -> a validated instance; `tools` -> tool calls; else text."""
        spec = self.spec(tier)
        model = self.model(tier)
        started = time.perf_counter()
        with self._slots[tier]:
            try:
                value, message = self._invoke(spec, model, list(messages), schema, tools, tool_choice, started)
            except TierflowError:
                raise
            except Exception as exc:
                if is_unreachable_error(exc):
                    raise TierUnreachable(tier, f"{type(exc).__name__}: {exc}") from exc
                if isinstance(exc, (ValidationError, json.JSONDecodeError, ValueError, KeyError)):
                    raise InvalidModelOutput(tier, f"{type(exc).__name__}: {exc}") from exc
                raise
        usage = _message_usage(spec, message, messages, time.perf_counter() - started)
        return ModelReply(value=value, message=message, usage=usage)

    def _bound(self, key: tuple[Any, ...], build: Callable[[], Runnable[Any, Any]]) -> Runnable[Any, Any]:
        # Binding a schema or tools builds a runnable; once per (tier, schema) is enough.
        with self._lock:
            runnable = self._runnables.get(key)
            if runnable is None:
                runnable = self._runnables[key] = build()
            return runnable

    def _structured_runnable(self, spec: TierSpec, model: BaseChatModel, schema: type[BaseModel]) -> Runnable[Any, Any]:
        method = spec.capabilities.structured_output
        return self._bound(
            (spec.name, "structured", schema, method),
            lambda: model.with_structured_output(schema, method=method, include_raw=True),
        )

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
        if not isinstance(raw, AIMessage) or not raw.tool_calls:
            raise _unparsed(spec, raw, messages, started, None)
        try:
            return schema.model_validate(raw.tool_calls[0]["args"]), raw
        except ValidationError as err:
            raise _unparsed(spec, raw, messages, started, err) from err

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
            if out.get("parsing_error") is not None or out.get("parsed") is None:
                raise _unparsed(spec, raw, messages, started, out.get("parsing_error"))
            return out["parsed"], raw

        if schema is not None:
            return structured(model, schema, messages)
        if tools:
            if not spec.capabilities.tools:
                raise InvalidModelOutput(spec.name, "this tier does not support tool calls")
            if spec.capabilities.tool_choice == "named" and needs_selection(tools, tool_choice):
                return select_then_call(model, messages, tools, tool_choice, structured)
            message = model.bind_tools(list(tools), tool_choice=tool_choice).invoke(messages)
            return list(message.tool_calls), message
        message = model.invoke(messages)
        text = message.content if isinstance(message.content, str) else json.dumps(message.content)
        return text, message
