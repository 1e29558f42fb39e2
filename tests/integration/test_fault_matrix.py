"""The fault matrix: every graph with model steps, its slm tier behind a loopback
OpenAI-compatible server that fails in one way, and the documented outcome of each cell.

| fault                                                  | outcome                                      |
|--------------------------------------------------------|----------------------------------------------|
| closed port, timeout, HTTP 429, HTTP 500               | fall back to the next tier; the slm cools down |
| HTTP 404 (model name), HTTP 401 (key)                  | the run stops with a configuration error; no fallback |
| broken JSON, invalid tool call, wrong schema, unknown tool | a failed verdict, escalated to the next tier |

In every cell: no exception reaches the caller, no slm answer is taken as verified, and
the ledger holds exactly one row per request each tier's server received.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.servers.openai_faults import FAULTS, FaultServer, fault_server
from tests.servers.process import LOOPBACK, free_port
from tierflow.graphs import function_calling, math_qa, order_agent, slot_extraction, ticket_triage
from tierflow.model_tiers import TierRegistry, config_from_mapping
from tierflow.tools.retail import RetailDB, copy_retail_db

SLM, FRONTIER = "slm-model", "frontier-model"
KEY_ENV = "TIERFLOW_FAULT_TEST_KEY"
SLM_TIMEOUT_S = 1.0

OUTCOMES = {
    "closed_port": "fallback",
    "timeout": "fallback",
    "429": "fallback",
    "500": "fallback",
    "404": "configuration",
    "401": "configuration",
    "malformed_json": "failed_verdict",
    "invalid_tool_call": "failed_verdict",
    "wrong_schema": "failed_verdict",
    "hallucinated_tool": "failed_verdict",
}
assert set(OUTCOMES) == {"closed_port", *FAULTS}

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}

# graph -> (module, input, run-context fields). ticket_triage stops after its two slm steps,
# so a cooling-down slm is seen skipped by the second one.
GRAPHS: dict[str, tuple[Any, dict[str, Any], dict[str, Any]]] = {
    "ticket_triage": (ticket_triage, {"request": "I lost my card yesterday, please block it."}, {"stop_after": ["extract"]}),
    "slot_extraction": (slot_extraction, {"request": "A table for 4 people at 7pm tomorrow, please."}, {}),
    "function_calling": (function_calling, {"request": "What is the weather in Paris?", "functions": [WEATHER]}, {}),
    "math_qa": (math_qa, {"request": "Tom has 3 apples and buys 4 more. How many apples does he have?"}, {}),
    "order_agent": (order_agent, {"request": "Please cancel order #W2378156, my email is yusuf.rossi@example.com."}, {}),
}


def tiers(server: FaultServer, slm_port: int | None = None) -> dict[str, Any]:
    slm_url = f"http://{LOOPBACK}:{slm_port}/v1" if slm_port else server.base_url
    # Both on loopback, so local: slot_extraction's step is local_only.
    common = {"provider": "openai", "api_key_env": KEY_ENV, "local": True, "capabilities": {"tools": True}}
    return {
        "tiers": [
            {**common, "name": "slm", "model": SLM, "base_url": slm_url, "timeout_s": SLM_TIMEOUT_S,
             "price_input_per_mtok": 0.1, "price_output_per_mtok": 0.2},
            {**common, "name": "frontier", "model": FRONTIER, "base_url": server.base_url, "timeout_s": 10.0,
             "price_input_per_mtok": 5.0, "price_output_per_mtok": 15.0},
        ],
        "roles": {"plan": "frontier", "classify": "slm", "extract": "slm", "tool": "slm", "verify": "slm",
                  "respond": "frontier", "judge": "frontier"},
        "escalation": {"max_retries": 0, "on_top_failure": "fail"},
    }


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with fault_server() as running:
        # Slower than the slm's timeout, and short enough to keep the matrix quick.
        running.slow_s = SLM_TIMEOUT_S + 1.5
        yield running


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    secret = "sk-fault-matrix-" + os.urandom(8).hex()
    monkeypatch.setenv(KEY_ENV, secret)
    return secret


def _resources(graph: str, tmp_path: Path, retail_db: Path) -> Mapping[str, Any] | None:
    if graph == "ticket_triage":
        return {}  # classify and extract read only the message
    if graph == "order_agent":
        return {order_agent.RESOURCE_KEY: RetailDB.open(copy_retail_db(retail_db, tmp_path / "retail.sqlite"))}
    return None


def _run(graph: str, server: FaultServer, tmp_path: Path, retail_db: Path, *, slm_port: int | None = None) -> tuple[dict[str, Any], TierRegistry]:
    module, payload, context = GRAPHS[graph]
    registry = TierRegistry(config_from_mapping(tiers(server, slm_port), source="fault matrix"))
    compiled = module.build(registry=registry, resources=_resources(graph, tmp_path, retail_db))
    out = compiled.invoke(payload, context=context or None)
    return out, registry


def _slm_events(out: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in out.get("events") or [] if e.get("type") == kind and e.get("from", e.get("tier")) == "slm"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", list(OUTCOMES))
@pytest.mark.parametrize("graph", list(GRAPHS))
def test_fault_cell(graph: str, fault: str, server: FaultServer, key: str, tmp_path: Path, built_db: Path) -> None:
    server.reset(**({} if fault == "closed_port" else {SLM: fault}))
    out, registry = _run(graph, server, tmp_path, built_db, slm_port=free_port() if fault == "closed_port" else None)

    ledger = out.get("ledger") or []
    rows = {tier: sum(1 for u in ledger if u["tier"] == tier) for tier in ("slm", "frontier")}
    assert rows == {"slm": server.received(SLM), "frontier": server.received(FRONTIER)}, "ledger rows != requests"
    assert "slm" not in (out.get("decided_by") or {}).values(), "a faulty slm answer was taken as verified"
    assert all(u["verdict"] != "pass" for u in ledger if u["tier"] == "slm")

    outcome = OUTCOMES[fault]
    if outcome == "fallback":
        falls = _slm_events(out, "fallback")
        assert falls and falls[0]["to"] == "frontier", out.get("events")
        assert registry.cooldown_left("slm") > 0
        # Within the cool-down no second request goes to the slm (ticket_triage has two slm steps).
        assert server.received(SLM) <= 1
        if fault == "closed_port":
            assert rows["slm"] == 0
    elif outcome == "configuration":
        assert out["status"] == "error", out.get("failure")
        assert out["failure"]["kind"] == "configuration"
        assert f"HTTP {fault}" in out["failure"]["reason"]
        assert server.received(FRONTIER) == 0, "a misconfigured tier fell back and spent frontier money"
        assert key not in str(out), "the key leaked into the run's state"
    else:
        failed = [e for e in out["events"] if e.get("type") == "verdict" and e.get("tier") == "slm" and e["verdict"] == "fail"]
        assert failed, out.get("events")
        assert _slm_events(out, "escalate"), "a failed verdict on the slm must climb to the frontier"
        assert server.received(FRONTIER) >= 1
    assert registry.cooldown_left("frontier") == 0
