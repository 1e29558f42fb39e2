"""The embedded tiers (real GGUF models in-process) through `TierRegistry.call`.

These check the contract (schema-valid structured output, a valid tool call, real token
counts, one shared engine under concurrency, the timeout) on all three shipped models
(each file checked against its SHA-256 when it loads), not the answers' quality.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage

from tests.integration.provider_probes import TOOLS, TicketTriage
from tierflow.model_tiers import TierRegistry, TierUnreachable
from tierflow.model_tiers.providers import embedded

TICKET = (
    "Hello, I ordered a pair of running shoes two weeks ago (order A-1234) and the tracking "
    "page has not changed for six days. I was charged twice for it as well. Can you help?"
)


def embedded_tier(model: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "local",
        "provider": "embedded",
        "model": model,
        "max_output_tokens": 96,
        "price_input_per_mtok": 0.05,
        "price_output_per_mtok": 0.10,
        "options": {"n_ctx": 2048},
        **overrides,
    }


@pytest.fixture(scope="module", params=["smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-1.5b-instruct"])
def registry(request: pytest.FixtureRequest, make_tier_config: Any) -> TierRegistry:
    return TierRegistry(make_tier_config(embedded_tier(request.param)))


def _assert_real_usage(registry: TierRegistry, usage: Any) -> None:
    spec = registry.spec("local")
    assert usage.tier == "local" and usage.provider == "embedded" and usage.model == spec.model
    assert not usage.tokens_estimated
    assert usage.input_tokens > 0 and 0 < usage.output_tokens <= spec.max_output_tokens
    assert usage.cost_usd == pytest.approx(spec.cost(usage.input_tokens, usage.output_tokens))
    # The model's own probability of the least likely value token it chose.
    assert usage.confidence is not None and 0.0 < usage.confidence <= 1.0


def test_structured_output_is_schema_valid(registry: TierRegistry) -> None:
    reply = registry.call(
        "local",
        [SystemMessage("Classify the support ticket."), HumanMessage(TICKET)],
        schema=TicketTriage,
    )
    assert isinstance(reply.value, TicketTriage)
    TicketTriage.model_validate(reply.value.model_dump())
    _assert_real_usage(registry, reply.usage)


def test_required_tool_call_is_valid(registry: TierRegistry) -> None:
    reply = registry.call(
        "local",
        [HumanMessage("Where is my order A-1234? Please check its status.")],
        tools=list(TOOLS.values()),
        tool_choice="required",
    )
    assert len(reply.value) == 1
    call = reply.value[0]
    assert call["name"] in TOOLS
    TOOLS[call["name"]].args_schema.model_validate(call["args"])  # type: ignore[union-attr]
    assert reply.message.tool_calls == reply.value
    _assert_real_usage(registry, reply.usage)


def test_concurrent_calls_share_one_engine(monkeypatch: pytest.MonkeyPatch, make_tier_config: Any) -> None:
    """Threads calling one tier at once all succeed, on a single loaded engine.

    The tier allows 4 concurrent calls, so the engine's own lock is what serialises them;
    two registries are used to show the engine is shared per process, not per chat model.
    """
    loaded: list[embedded.EmbeddedEngine] = []

    class CountingEngine(embedded.EmbeddedEngine):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            loaded.append(self)

    monkeypatch.setattr(embedded, "EmbeddedEngine", CountingEngine)
    # An n_ctx no other test uses: the engine is loaded for the first time inside this test.
    config = make_tier_config(embedded_tier("smollm2-135m-instruct", max_concurrency=4, options={"n_ctx": 1536}))
    registries = [TierRegistry(config), TierRegistry(config)]
    workers = 4
    start = threading.Barrier(workers)

    def classify(i: int) -> TicketTriage:
        start.wait()
        reply = registries[i % 2].call("local", [HumanMessage(f"Ticket #{i}: {TICKET}")], schema=TicketTriage)
        assert not reply.usage.tokens_estimated
        return reply.value  # type: ignore[no-any-return]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(classify, range(workers)))

    assert len(results) == workers and all(isinstance(r, TicketTriage) for r in results)
    assert len(loaded) == 1
    assert embedded.get_engine("smollm2-135m-instruct", n_ctx=1536) is loaded[0]


def test_a_call_past_timeout_s_is_a_fault_and_the_engine_stays_usable(make_tier_config: Any) -> None:
    """timeout_s holds for in-process calls too: the decode stops at its first token past
    it and the call raises TierUnreachable (the ladder falls back); the next call works."""
    registry = TierRegistry(make_tier_config(embedded_tier("qwen2.5-coder-1.5b-instruct", timeout_s=0.5, max_output_tokens=200)))
    long_prompt = [HumanMessage("Write a long story about a lighthouse keeper. " * 20)]
    started = time.perf_counter()
    with pytest.raises(TierUnreachable, match=r"timeout_s=0\.5"):
        registry.call("local", long_prompt)
    assert time.perf_counter() - started < 10.0  # the prompt's evaluation, then one token
    patient = TierRegistry(make_tier_config(embedded_tier("qwen2.5-coder-1.5b-instruct", max_output_tokens=8)))
    reply = patient.call("local", [HumanMessage("Say hi.")])
    assert reply.usage.output_tokens > 0


def test_two_models_called_at_once_share_the_inference_thread(make_tier_config: Any) -> None:
    """Calls to different models from several threads all run, one at a time, on one OS
    thread (one OpenMP team on the machine's cores)."""
    names: set[str] = set()
    original = embedded.EmbeddedEngine._decode

    def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        names.add(threading.current_thread().name)
        return original(self, *args, **kwargs)

    registries = [
        TierRegistry(make_tier_config(embedded_tier(m, max_concurrency=2)))
        for m in ("smollm2-135m-instruct", "qwen2.5-coder-1.5b-instruct")
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(embedded.EmbeddedEngine, "_decode", recording)
        with ThreadPoolExecutor(max_workers=4) as pool:
            replies = list(pool.map(lambda i: registries[i % 2].call("local", [SystemMessage("Classify the support ticket."), HumanMessage(TICKET)], schema=TicketTriage), range(4)))
    assert all(isinstance(r.value, TicketTriage) for r in replies)
    assert len(names) == 1 and next(iter(names)).startswith("tierflow-llama")
