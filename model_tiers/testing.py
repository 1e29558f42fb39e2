"""Test doubles shipped with the package: a scripted chat model and a network kill switch.

Scripted models are for tests of control flow only; they never stand in for a real tier
in a run that claims to measure quality.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from tierflow.model_tiers.errors import ConfigError, NetworkBlocked
from tierflow.model_tiers.ledger import estimate_tokens
from tierflow.model_tiers.providers._tool_calling import ToolCallingChatModel, forced_tool_name, messages_as_text

if TYPE_CHECKING:
    import _socket

__all__ = [
    "ScriptedChatModel",
    "ScriptedCall",
    "tool_call",
    "block_network",
    "scripted_model_from_options",
    "scripted_ladder_toml",
]

# A reply is text, a dict (the arguments of the forced / only tool), an AIMessage (used
# as is), or an exception instance (raised, to simulate an outage or a bad answer).
Reply = str | dict[str, Any] | AIMessage | BaseException
ReplyFunction = Callable[[list[BaseMessage], Sequence[dict[str, Any]]], Reply]


def tool_call(name: str, args: Mapping[str, Any] | None = None, *, content: str = "") -> AIMessage:
    """A scripted reply that calls tool `name` with `args`."""
    return AIMessage(
        content=content,
        tool_calls=[{"name": name, "args": dict(args or {}), "id": f"call_{uuid.uuid4().hex[:12]}"}],
    )


class ScriptedCall(dict[str, Any]):
    """What the model was asked: `messages` (list), `tools` (OpenAI-format dicts) and
    `tool_choice` (as bound: "auto", "any", a tool name, or None)."""


class ScriptedChatModel(ToolCallingChatModel):
    """Replies from a list (in order), a dict keyed by prompt, or a function.

    A dict is matched against the last human message: exact text first, then the first
    key contained in it; `"*"` is the fallback. Usage is reported with the same
    4-characters-per-token estimate the ledger uses for providers that give none.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # Typed loosely on purpose: pydantic would try to coerce an exception reply into an
    # AIMessage. `_check_replies` enforces the real contract.
    replies: Any
    model: str = "scripted"
    cycle: bool = False
    calls: list[ScriptedCall] = Field(default_factory=list)
    _index: int = PrivateAttr(default=0)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @field_validator("replies")
    @classmethod
    def _check_replies(cls, value: Any) -> Any:
        if not (callable(value) or isinstance(value, (list, dict))):
            raise TypeError("replies must be a list, a dict keyed by prompt, or a function")
        return value

    @property
    def _llm_type(self) -> str:
        return "tierflow-scripted"

    def _next_reply(self, messages: list[BaseMessage], tools: Sequence[dict[str, Any]]) -> Reply:
        reply: Reply
        if callable(self.replies):
            reply = self.replies(messages, tools)
            return reply
        if isinstance(self.replies, dict):
            prompt = next(
                (m.content for m in reversed(messages) if isinstance(m, HumanMessage)), ""
            )
            prompt = prompt if isinstance(prompt, str) else json.dumps(prompt)
            if prompt in self.replies:
                reply = self.replies[prompt]
                return reply
            for key, keyed in self.replies.items():
                if key != "*" and key in prompt:
                    reply = keyed
                    return reply
            if "*" in self.replies:
                reply = self.replies["*"]
                return reply
            raise LookupError(f"scripted model has no reply for prompt: {prompt[:200]!r}")
        with self._lock:
            if self._index >= len(self.replies):
                if not self.cycle or not self.replies:
                    raise LookupError(
                        f"scripted model ran out of replies after {len(self.replies)} calls"
                    )
                self._index = 0
            reply = self.replies[self._index]
            self._index += 1
        return reply

    def _answer(
        self, messages: list[BaseMessage], tools: list[dict[str, Any]], tool_choice: Any, stop: list[str] | None
    ) -> ChatResult:
        with self._lock:
            self.calls.append(ScriptedCall(messages=list(messages), tools=tools, tool_choice=tool_choice))
        reply = self._next_reply(messages, tools)
        if isinstance(reply, BaseException):
            raise reply
        message = self._as_message(reply, tools, tool_choice)
        out_text = messages_as_text([message])
        message.usage_metadata = {
            "input_tokens": estimate_tokens(messages_as_text(messages)),
            "output_tokens": estimate_tokens(out_text),
            "total_tokens": estimate_tokens(messages_as_text(messages)) + estimate_tokens(out_text),
        }
        message.response_metadata = {"model_name": self.model}
        return ChatResult(generations=[ChatGeneration(message=message)])

    @staticmethod
    def _as_message(reply: str | dict[str, Any] | AIMessage, tools: Sequence[dict[str, Any]], tool_choice: Any) -> AIMessage:
        if isinstance(reply, AIMessage):
            return reply.model_copy(deep=True)
        target = forced_tool_name(tools, tool_choice) if tools else None
        if target is not None:
            if isinstance(reply, str):
                try:
                    args = json.loads(reply)
                except json.JSONDecodeError:
                    # Not JSON: hand the text back as content, the caller's parser decides.
                    return AIMessage(content=reply)
            else:
                args = reply
            return tool_call(target, args)
        if isinstance(reply, dict):
            return AIMessage(content=json.dumps(reply))
        return AIMessage(content=str(reply))


def _import_object(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    if not attr:
        raise ConfigError(f"'{ref}' must be written 'package.module:attribute'")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot import scripted replies '{ref}': {err}") from None


def scripted_model_from_options(tier: str, options: Mapping[str, Any]) -> ScriptedChatModel:
    """Build a scripted model from a tier's `options` (`replies`, `by_prompt` or `function`)."""
    if "function" in options:
        replies: Any = _import_object(str(options["function"]))
        if not callable(replies):
            raise ConfigError(f"tier '{tier}': options.function must name a callable")
    elif "by_prompt" in options:
        replies = dict(options["by_prompt"])
    elif "replies" in options:
        replies = list(options["replies"])
    else:
        raise ConfigError(
            f"tier '{tier}' is scripted but has no options.replies, options.by_prompt or options.function"
        )
    return ScriptedChatModel(replies=replies, model=f"scripted:{tier}", cycle=bool(options.get("cycle", True)))


_LOOPBACK = ("127.0.0.1", "::1", "localhost")


@contextlib.contextmanager
def block_network(*, allow_loopback: bool = False) -> Iterator[None]:
    """Refuse every outgoing connection (optionally except loopback) while active.

    Tests turn it on so a misconfigured tier fails loudly instead of calling a paid API.
    """
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def _check(sock: _socket.socket, address: Any) -> None:
        if sock.family == getattr(socket, "AF_UNIX", None):
            return
        host = address[0] if isinstance(address, tuple) else str(address)
        if allow_loopback and host in _LOOPBACK:
            return
        raise NetworkBlocked(f"network access blocked in tests (tried to connect to {address!r})")

    # Typed on the C base class, where `connect` is defined (socket.socket subclasses it).
    def guarded_connect(sock: _socket.socket, address: Any) -> None:
        _check(sock, address)
        real_connect(sock, address)

    def guarded_connect_ex(sock: _socket.socket, address: Any) -> int:
        _check(sock, address)
        return real_connect_ex(sock, address)

    # The kill switch is a patch of the socket class itself, which mypy forbids on methods.
    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]  # the same patch, undone
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]  # the same patch, undone


def scripted_ladder_toml(slm_function: str, frontier_function: str, *, frontier_local: bool = False, extra: str = "") -> str:
    """A tiers file (TOML text) with two scripted tiers whose replies come from functions
    named 'package.module:attribute': for tests that run graphs through files, servers or CLIs."""
    local = "" if frontier_local else "local = false\n"
    return f"""
[[tiers]]
name = "slm"
provider = "scripted"
model = "scripted-slm"
price_input_per_mtok = 0.1
price_output_per_mtok = 0.1
options = {{ function = "{slm_function}" }}

[[tiers]]
name = "frontier"
provider = "scripted"
model = "scripted-frontier"
{local}price_input_per_mtok = 10.0
price_output_per_mtok = 30.0
options = {{ function = "{frontier_function}" }}
{extra}"""
