"""The `ollama` provider against a server speaking Ollama's HTTP API (embedded SmolLM2 behind it).

Two clients: ChatOllama, as tierflow's `ollama` tiers use it (it always streams and sends
`format=<JSON schema>` for structured output), and the `ollama` Python client directly.
No request forces a tool call: with tools offered, the model decides whether to call one,
as with Ollama.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from tests.integration.conftest import server_tier
from tests.integration.provider_probes import TOOLS, TicketTriage
from tests.servers.ollama_protocol import ChatMessage, engine_messages
from tests.servers.process import ServerProcess
from tierflow.model_tiers import InvalidModelOutput, TierMisconfigured, TierRegistry, Usage

TICKET = "My parcel for order A-1234 has not moved for six days. Where is it?"
# A request the order tools fit, and one none of them does (SmolLM2 at temperature 0 calls
# lookup_order for the first and answers the second in text).
ORDER_STATUS = "What is the status of order A-1234?"
NO_TOOL_FITS = "Translate 'good morning' into French."


TRIAGE_SCHEMA = TicketTriage.model_json_schema()


def get_order_status(order_id: str) -> str:
    """Get the shipping status of an order.

    Args:
      order_id: The order's id, for example A-1234.
    """
    return order_id


def ollama_tier(server: ServerProcess, model: str, method: str = "json_schema") -> dict[str, Any]:
    return server_tier("local", "ollama", model, server.url, method=method, price=(0.1, 0.1))


@pytest.fixture(scope="module")
def registry(ollama_server: ServerProcess, ollama_model: str, make_tier_config: Any) -> TierRegistry:
    return TierRegistry(make_tier_config(ollama_tier(ollama_server, ollama_model)))


@pytest.fixture(scope="module")
def client(ollama_server: ServerProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=ollama_server.url, timeout=300) as client:
        yield client


def _assert_reported_usage(usage: Usage) -> None:
    """Counts come from the final chunk's prompt_eval_count / eval_count, not an estimate."""
    assert usage.tier == "local" and usage.provider == "ollama"
    assert not usage.tokens_estimated
    assert usage.input_tokens > 0 and 0 < usage.output_tokens <= 64


# -- ChatOllama through the registry ---------------------------------------------------------


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output(
    method: str, ollama_server: ServerProcess, ollama_model: str, make_tier_config: Any
) -> None:
    registry = TierRegistry(make_tier_config(ollama_tier(ollama_server, ollama_model, method)))
    messages = [SystemMessage("Classify the support ticket."), HumanMessage(TICKET)]
    if method == "function_calling":
        # Ollama has no tool_choice: the schema goes as a tool the model may or may not call
        # (as a real Ollama does it). A reply without the call is the model's mistake: a
        # typed InvalidModelOutput that still carries the request's usage, never a crash.
        try:
            reply = registry.call("local", messages, schema=TicketTriage)
        except InvalidModelOutput as err:
            assert err.usage is not None and err.usage.input_tokens > 0
            assert "no structured output" in err.reason
            return
    else:
        reply = registry.call("local", messages, schema=TicketTriage)
    assert isinstance(reply.value, TicketTriage)
    _assert_reported_usage(reply.usage)
    if method == "json_schema":  # the JSON text is the message: its value tokens are judged
        assert reply.usage.confidence is not None and 0.0 < reply.usage.confidence <= 1.0


def test_tool_call(registry: TierRegistry) -> None:
    reply = registry.call("local", [HumanMessage(ORDER_STATUS)], tools=list(TOOLS.values()))
    assert len(reply.value) == 1
    call = reply.value[0]
    assert call["name"] in TOOLS
    TOOLS[call["name"]].args_schema.model_validate(call["args"])  # type: ignore[union-attr]
    _assert_reported_usage(reply.usage)


def test_a_request_no_tool_fits_is_answered_in_text(registry: TierRegistry) -> None:
    reply = registry.call("local", [HumanMessage(NO_TOOL_FITS)], tools=list(TOOLS.values()))
    assert reply.value == [] and not reply.message.tool_calls
    assert isinstance(reply.message.content, str) and reply.message.content.strip()
    _assert_reported_usage(reply.usage)


def test_plain_text_after_a_tool_result(registry: TierRegistry) -> None:
    conversation = [
        HumanMessage(TICKET),
        AIMessage("", tool_calls=[{"name": "lookup_order", "args": {"order_id": "A-1234"}, "id": "call_1"}]),
        ToolMessage("in transit, delivery expected tomorrow", tool_call_id="call_1"),
    ]
    reply = registry.call("local", conversation)
    assert isinstance(reply.value, str) and reply.value.strip()
    _assert_reported_usage(reply.usage)
    # ChatOllama asks for `logprobs` (the tier's default) and keeps them: the confidence.
    assert reply.usage.confidence is not None and 0.0 < reply.usage.confidence <= 1.0


def test_streaming(registry: TierRegistry) -> None:
    chunks = list(registry.model("local").stream([HumanMessage("Say hello to the customer.")]))
    texts = [c.content for c in chunks if c.content]
    assert len(texts) >= 2, "the answer should arrive in several chunks"
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert isinstance(total.content, str) and total.content == "".join(texts)  # type: ignore[arg-type]
    assert total.usage_metadata is not None and total.usage_metadata["input_tokens"] > 0
    assert 0 < total.usage_metadata["output_tokens"] <= 64


def test_unknown_model_is_a_configuration_error_not_a_fallback(ollama_server: ServerProcess, make_tier_config: Any) -> None:
    registry = TierRegistry(make_tier_config(ollama_tier(ollama_server, "no-such-model:7b")))
    with pytest.raises(TierMisconfigured, match=r"has no model 'no-such-model:7b' .*HTTP 404") as caught:
        registry.call("local", [HumanMessage("hello")])
    assert caught.value.status == 404 and registry.cooldown_left("local") == 0


# -- the ollama client directly -----------------------------------------------------------------


def test_list_show_and_version(client: ollama.Client, ollama_server: ServerProcess, ollama_model: str) -> None:
    listed = client.list()
    assert ollama_model in [m.model for m in listed.models]
    entry = next(m for m in listed.models if m.model == ollama_model)
    assert entry.size and entry.digest and entry.details and entry.details.format == "gguf"
    shown = client.show(ollama_model)
    assert shown.details is not None and shown.details.family == "llama"
    assert shown.modelinfo is not None and shown.modelinfo["general.architecture"] == "llama"
    assert shown.capabilities is not None and "tools" in shown.capabilities
    # The client has no version() method: the endpoint is read as ollama's CLI reads it.
    version = httpx.get(f"{ollama_server.url}/api/version", timeout=10).json()
    assert isinstance(version["version"], str) and version["version"]


def test_chat_structured_not_streamed(client: ollama.Client, ollama_model: str) -> None:
    response = client.chat(
        ollama_model,
        messages=[{"role": "user", "content": f"Classify this ticket: {TICKET}"}],
        format=TRIAGE_SCHEMA,
        options={"temperature": 0, "num_predict": 48},
        stream=False,
    )
    assert response.done and response.done_reason == "stop"
    TicketTriage.model_validate_json(response.message.content or "")
    assert response.prompt_eval_count and response.prompt_eval_count > 0
    assert response.eval_count and 0 < response.eval_count <= 48
    assert response.total_duration and response.eval_duration is not None


def test_chat_streamed_text_respects_num_predict(client: ollama.Client, ollama_model: str) -> None:
    chunks = list(
        client.chat(
            ollama_model,
            messages=[{"role": "user", "content": "Write a long story about a lost parcel."}],
            options={"temperature": 0, "num_predict": 8},
            stream=True,
        )
    )
    *body, final = chunks
    assert len(body) >= 2 and not any(c.done for c in body)
    assert "".join(c.message.content or "" for c in body).strip()
    assert final.done and final.done_reason == "length" and final.eval_count == 8
    assert final.prompt_eval_count and final.prompt_eval_count > 0


def test_chat_streamed_structured(client: ollama.Client, ollama_model: str) -> None:
    chunks = list(
        client.chat(
            ollama_model,
            messages=[{"role": "user", "content": f"Classify this ticket: {TICKET}"}],
            format=TRIAGE_SCHEMA,
            options={"temperature": 0, "num_predict": 48},
            stream=True,
        )
    )
    assert chunks[-1].done and len(chunks) > 2
    TicketTriage.model_validate_json("".join(c.message.content or "" for c in chunks))


def test_chat_json_mode(client: ollama.Client, ollama_model: str) -> None:
    response = client.chat(
        ollama_model,
        messages=[{"role": "user", "content": "Describe order A-1234 as a JSON object."}],
        format="json",
        options={"temperature": 0, "num_predict": 48},
    )
    if response.done_reason == "stop":
        assert isinstance(json.loads(response.message.content or ""), dict)
    else:  # cut off by num_predict: still a JSON object's prefix
        assert (response.message.content or "").lstrip().startswith("{")


@pytest.mark.parametrize("stream", [False, True])
def test_chat_tool_call(client: ollama.Client, ollama_model: str, stream: bool) -> None:
    kwargs: dict[str, Any] = {
        "messages": [{"role": "user", "content": "What is the status of order A-1234?"}],
        "tools": [get_order_status],
        "options": {"temperature": 0, "num_predict": 48},
    }
    if stream:
        chunks = list(client.chat(ollama_model, stream=True, **kwargs))
        assert chunks[-1].done
        with_calls = [c for c in chunks if c.message.tool_calls]
        assert len(with_calls) == 1
        calls = with_calls[0].message.tool_calls
    else:
        response = client.chat(ollama_model, stream=False, **kwargs)
        assert response.done
        calls = response.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].function.name == "get_order_status"
    assert isinstance(calls[0].function.arguments["order_id"], str)


def test_unknown_model_is_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat("nope", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert caught.value.status_code == 404
    assert caught.value.error == "model 'nope' not found"
    with pytest.raises(ollama.ResponseError) as caught:
        client.show("nope")
    assert caught.value.status_code == 404


@pytest.mark.parametrize("stream", [False, True])
def test_chat_without_a_fitting_tool_answers_in_text(client: ollama.Client, ollama_model: str, stream: bool) -> None:
    kwargs: dict[str, Any] = {
        "messages": [{"role": "user", "content": NO_TOOL_FITS}],
        "tools": [get_order_status],
        "options": {"temperature": 0, "num_predict": 48},
    }
    if stream:
        chunks = list(client.chat(ollama_model, stream=True, **kwargs))
        assert chunks[-1].done and not any(c.message.tool_calls for c in chunks)
        text = "".join(c.message.content or "" for c in chunks)
    else:
        response = client.chat(ollama_model, stream=False, **kwargs)
        assert response.done and not response.message.tool_calls
        text = response.message.content or ""
    assert text.strip()


def test_logprobs_come_with_each_chunk(client: ollama.Client, ollama_model: str) -> None:
    """As Ollama documents it: each streamed chunk carries the log-probabilities of the
    tokens whose text it brings, and the top alternatives when asked for."""
    chunks = list(
        client.chat(
            ollama_model,
            messages=[{"role": "user", "content": "Say hello to the customer."}],
            options={"temperature": 0, "num_predict": 12},
            logprobs=True,
            top_logprobs=2,
            stream=True,
        )
    )
    *body, final = chunks
    assert final.done and final.eval_count
    with_text = [c for c in body if c.message.content]
    assert len(with_text) >= 2
    # Every chunk but the last has its tokens' probabilities (the last token's is only known
    # at a next decode step, which a stop at num_predict never takes).
    for chunk in with_text[:-1]:
        assert chunk.logprobs, chunk
        assert "".join(entry.token for entry in chunk.logprobs) == chunk.message.content
        for entry in chunk.logprobs:
            assert entry.logprob <= 0.0 and entry.top_logprobs and len(entry.top_logprobs) == 2
            # At temperature 0 the chosen token is the most likely one.
            assert entry.top_logprobs[0].token == entry.token
    counted = sum(len(c.logprobs or []) for c in chunks)
    assert final.eval_count - 1 <= counted <= final.eval_count


def test_logprobs_of_a_reply_not_streamed(client: ollama.Client, ollama_model: str) -> None:
    response = client.chat(
        ollama_model,
        messages=[{"role": "user", "content": "Say hello to the customer."}],
        options={"temperature": 0, "num_predict": 12},
        logprobs=True,
        stream=False,
    )
    assert response.logprobs and response.eval_count
    assert (response.message.content or "").startswith("".join(entry.token for entry in response.logprobs))
    assert all(entry.top_logprobs is None for entry in response.logprobs)


def test_a_tool_result_reaches_the_model_as_a_tool_turn(client: ollama.Client, ollama_model: str) -> None:
    """`role: tool` with `tool_name`, as Ollama's API takes it: the model's chat template
    renders it as a tool turn (SmolLM2's ChatML: `<|im_start|>tool`), not as a user message."""
    conversation: list[dict[str, Any]] = [
        {"role": "user", "content": ORDER_STATUS},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_order_status", "arguments": {"order_id": "A-1234"}}}]},
        {"role": "tool", "content": "in transit, delivery expected tomorrow", "tool_name": "get_order_status"},
    ]
    response = client.chat(ollama_model, messages=conversation, options={"temperature": 0, "num_predict": 32}, stream=False)
    assert response.done and (response.message.content or "").strip()

    # What the server hands the engine, rendered by the chat template the server reports.
    template = client.show(ollama_model).template or ""
    turns = engine_messages([ChatMessage.model_validate(m) for m in conversation], chat_format=None)
    assert turns[-1] == {"role": "tool", "content": "in transit, delivery expected tomorrow", "tool_name": "get_order_status"}
    prompt = Jinja2ChatFormatter(template=template, eos_token="<|im_end|>", bos_token="")(messages=turns).prompt
    assert "<|im_start|>tool\nin transit, delivery expected tomorrow<|im_end|>" in prompt
    assert "<|im_start|>user\nin transit" not in prompt
