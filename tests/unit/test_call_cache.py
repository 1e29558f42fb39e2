"""The eval call cache (model_tiers/call_cache.py): keys, persistence, saved time, threads,
the registry hook, and an eval run whose policies share their identical calls."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from langchain_core.messages import BaseMessage, HumanMessage
from pydantic import BaseModel

from tests.unit.test_eval_harness import SIX, write_banking77, write_tiers
from tierflow.evals.harness import EvalSettings, ResultStore, resolve_policies, run_eval
from tierflow.evals.suites.ticket_triage import BANKING77
from tierflow.model_tiers import TierRegistry, config_from_mapping
from tierflow.model_tiers.call_cache import CALL_CACHE_FILE, SQLiteCallCache, TierScopedCache, tier_scope
from tierflow.model_tiers.ledger import CACHE_HIT_KEY, CACHE_SAVED_KEY
from tierflow.model_tiers.testing import ScriptedChatModel, block_network


class Label(BaseModel):
    label: Literal["refund", "card_lost"]


class Other(BaseModel):
    label: str


ROLES = {r: "slm" for r in ("plan", "classify", "extract", "tool", "verify", "respond", "judge")}


def tier_config(slm: dict[str, Any], frontier: dict[str, Any]) -> Any:
    return config_from_mapping({"tiers": [{"name": "slm", **slm}, {"name": "frontier", **frontier}], "roles": ROLES})


def counting(delay: float = 0.0) -> tuple[list[str], Any]:
    """A scripted reply function that records each prompt it answers (after `delay`)."""
    seen: list[str] = []
    lock = threading.Lock()

    def reply(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
        text = str(messages[-1].content)
        with lock:
            seen.append(text)
        time.sleep(delay)
        if tools:
            return {"label": "card_lost"}
        return f"answer to {text} #{len(seen)}"

    return seen, reply


@pytest.fixture()
def cache(tmp_path: Path) -> Any:
    c = SQLiteCallCache(tmp_path / CALL_CACHE_FILE)
    yield c
    c.close()


def test_hit_returns_a_marked_copy_of_the_first_answer(cache):
    seen, reply = counting()
    model = ScriptedChatModel(replies=reply, cache=cache)
    first = model.invoke([HumanMessage("a")])
    second = model.invoke([HumanMessage("a")])
    assert seen == ["a"] and second.content == first.content
    assert CACHE_HIT_KEY not in first.response_metadata
    assert second.response_metadata[CACHE_HIT_KEY] is True and second.response_metadata[CACHE_SAVED_KEY] >= 0
    assert second.usage_metadata["input_tokens"] == first.usage_metadata["input_tokens"]
    second.content = "mutated by a caller"
    assert model.invoke([HumanMessage("a")]).content == first.content
    assert cache.stats().hits == 2 and cache.stats().misses == 1


def test_key_covers_prompt_tools_tool_choice_and_schema(cache):
    seen, reply = counting()
    model = ScriptedChatModel(replies=reply, cache=cache)
    model.invoke([HumanMessage("a")])
    model.invoke([HumanMessage("b")])  # another prompt
    model.bind_tools([Label], tool_choice="Label").invoke([HumanMessage("a")])  # tools bound
    model.bind_tools([Other], tool_choice="Other").invoke([HumanMessage("a")])  # other tools
    model.bind_tools([Label], tool_choice="auto").invoke([HumanMessage("a")])  # other tool_choice
    model.with_structured_output(Label).invoke([HumanMessage("a")])  # a schema
    model.with_structured_output(Other).invoke([HumanMessage("a")])  # another schema
    assert len(seen) == 7 and cache.stats().hits == 0
    model.bind_tools([Label], tool_choice="Label").invoke([HumanMessage("a")])
    model.with_structured_output(Other).invoke([HumanMessage("a")])
    assert len(seen) == 7 and cache.stats().hits == 2


def test_key_covers_the_tier_and_its_spec(tmp_path):
    def tiers(temperature: float) -> Any:
        spec = {"provider": "scripted", "model": "same", "options": {"function": "tests.unit.test_call_cache:echo"}}
        return tier_config({**spec, "temperature": temperature}, spec)

    cache = SQLiteCallCache(tmp_path / "c.sqlite")
    reg = TierRegistry(tiers(0.0), call_cache=cache)
    ask = [HumanMessage("q")]
    assert not reg.call("slm", ask).usage.cache_hit
    assert not reg.call("frontier", ask).usage.cache_hit  # same model and prompt, another tier
    assert reg.call("slm", ask).usage.cache_hit
    warmer = TierRegistry(tiers(0.7), call_cache=cache)  # the slm's spec changed
    assert not warmer.call("slm", ask).usage.cache_hit
    assert tier_scope(tiers(0.0).tier("slm")) != tier_scope(tiers(0.7).tier("slm"))
    cache.close()


def echo(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> str:
    return f"echo {messages[-1].content}"


def test_entries_persist_across_instances_with_their_latency(tmp_path):
    path = tmp_path / "c.sqlite"
    seen, reply = counting(delay=0.05)
    first = SQLiteCallCache(path)
    ScriptedChatModel(replies=reply, cache=first).invoke([HumanMessage("a")])
    first.close()
    again = SQLiteCallCache(path)
    hit = ScriptedChatModel(replies=reply, cache=again).invoke([HumanMessage("a")])
    assert seen == ["a"] and hit.response_metadata[CACHE_HIT_KEY] is True
    assert hit.response_metadata[CACHE_SAVED_KEY] >= 0.05
    again.close()


def test_saved_seconds_add_up_over_hits(cache):
    _seen, reply = counting(delay=0.05)
    model = ScriptedChatModel(replies=reply, cache=cache)
    for _ in range(3):
        model.invoke([HumanMessage("slow")])
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (2, 1)
    assert 0.1 <= stats.saved_s < 1.0


def test_concurrent_identical_calls_are_made_once(cache):
    seen, reply = counting(delay=0.2)
    model = ScriptedChatModel(replies=reply, cache=cache)
    start = threading.Barrier(8)
    answers: dict[int, str] = {}

    def work(i: int) -> None:
        start.wait()
        answers[i] = str(model.invoke([HumanMessage(f"p{i % 2}")]).content)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(seen) == ["p0", "p1"]  # each distinct call once; the others waited for it
    assert len({answers[i] for i in range(0, 8, 2)}) == 1 and len({answers[i] for i in range(1, 8, 2)}) == 1
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (6, 2) and stats.saved_s >= 6 * 0.2


def _registry(function: str, cache: Any) -> TierRegistry:
    tier = {"provider": "scripted", "model": "s", "options": {"function": function}, "price_input_per_mtok": 1.0}
    return TierRegistry(tier_config(tier, tier), call_cache=cache)


def labeller(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    time.sleep(0.02)
    return {"label": "card_lost"}


def test_registry_answers_a_repeated_call_from_the_cache(cache):
    reg = _registry("tests.unit.test_call_cache:labeller", cache)
    ask = [HumanMessage("I lost my card")]
    first = reg.call("slm", ask, schema=Label)
    second = reg.with_config(reg.config).call("slm", ask, schema=Label)  # a run context's view shares it
    assert not first.usage.cache_hit and first.usage.saved_s == 0
    assert second.usage.cache_hit and second.value == first.value == Label(label="card_lost")
    assert second.usage.saved_s >= 0.02 and second.usage.cost_usd == first.usage.cost_usd
    # An injected model (a test's scripted one) is left alone: no cache.
    seen, reply = counting()
    reg.set_model("slm", ScriptedChatModel(replies=reply))
    reg.call("slm", ask)
    assert not reg.call("slm", ask).usage.cache_hit and len(seen) == 2


FLAKY: dict[str, int] = {}


def flaky(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> str:
    FLAKY["calls"] = FLAKY.get("calls", 0) + 1
    if FLAKY["calls"] == 1:
        time.sleep(0.3)
        raise RuntimeError("the server fell over")
    return "fine"


def test_an_errored_call_is_not_cached_and_frees_its_waiters(tmp_path):
    FLAKY.clear()
    cache = SQLiteCallCache(tmp_path / "c.sqlite", wait_s=60)
    reg = _registry("tests.unit.test_call_cache:flaky", cache)
    ask = [HumanMessage("hello")]
    outcome: dict[str, Any] = {}

    def first() -> None:
        try:
            reg.call("slm", ask)
        except RuntimeError as err:
            outcome["first"] = err

    owner = threading.Thread(target=first)
    owner.start()
    time.sleep(0.1)  # the owner has claimed the call and is still computing
    started = time.perf_counter()
    waiter = reg.call("slm", ask)  # waits for it, then computes itself when it fails
    assert time.perf_counter() - started < 5
    owner.join()
    assert isinstance(outcome.get("first"), RuntimeError)
    assert waiter.value == "fine" and not waiter.usage.cache_hit
    assert reg.call("slm", ask).usage.cache_hit and FLAKY["calls"] == 2
    assert (cache.stats().misses, cache.stats().hits) == (2, 1)  # the waiter claimed it anew
    cache.close()


def test_a_scoped_view_keeps_tiers_apart_in_one_file(cache):
    seen, reply = counting()
    a = ScriptedChatModel(replies=reply, cache=TierScopedCache(cache, "tier=a"))
    b = ScriptedChatModel(replies=reply, cache=TierScopedCache(cache, "tier=b"))
    a.invoke([HumanMessage("x")])
    b.invoke([HumanMessage("x")])
    a.invoke([HumanMessage("x")])
    assert seen == ["x", "x"] and cache.stats().hits == 1


# -- an eval run ---------------------------------------------------------------------------


def _eval(root: Path, *, call_cache: bool, concurrency: int = 1) -> Any:
    policies = resolve_policies(("all-slm", "tiered"), defaults=(), thresholds=BANKING77.thresholds)
    settings = EvalSettings(
        policies=tuple(policies), out_dir=root / "run", tiers_file=write_tiers(root), progress=False,
        concurrency=concurrency, dataset_path=write_banking77(root / "data", SIX), call_cache=call_cache,
    )
    return run_eval(BANKING77, settings)


@pytest.fixture()
def eval_env(monkeypatch, tmp_path):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST", "TIERFLOW_TIERS", "TIERFLOW_POLICY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TIERFLOW_HOME", str(tmp_path / "home"))
    with block_network():
        yield tmp_path


def _rows(result: Any, policy: str, tier: str) -> list[dict[str, Any]]:
    records = ResultStore(result.out_dir).load(policy)
    return [u for cid in sorted(records) for u in records[cid].ledger if u["tier"] == tier]


def test_policies_of_one_eval_share_their_identical_calls(eval_env):
    result = _eval(eval_env, call_cache=True)
    assert (result.out_dir / CALL_CACHE_FILE).is_file()
    first, second = _rows(result, "all-slm", "slm"), _rows(result, "tiered", "slm")
    # Cases run policy after policy (concurrency 1): tiered's slm calls are all-slm's, replayed.
    assert second and all(u["cache_hit"] and u["saved_s"] > 0 for u in second)
    assert not any(u["cache_hit"] for u in first)
    assert [u["input_tokens"] for u in second] == [u["input_tokens"] for u in first]
    assert not any(u["cache_hit"] for u in _rows(result, "tiered", "frontier"))
    report = result.report
    tiered = report.policy("tiered")
    assert (report.policy("all-slm").cache_hits, tiered.cache_hits) == (0, len(second))
    assert tiered.cache_saved_s == pytest.approx(sum(u["saved_s"] for u in second))
    assert report.cache_hits == len(second) and report.cache_saved_s == pytest.approx(tiered.cache_saved_s)
    assert tiered.quality["exact_label"].successes == 3  # the same outcomes as without the cache
    assert f"call cache: {len(second)} hits" in result.paths["markdown"].read_text()


def test_concurrent_policies_still_share_every_identical_call(eval_env):
    result = _eval(eval_env, call_cache=True, concurrency=3)
    rows = _rows(result, "all-slm", "slm") + _rows(result, "tiered", "slm")
    # Each distinct slm call is made once, whichever policy got there first.
    assert sum(1 for u in rows if u["cache_hit"]) == len(rows) // 2 == result.report.cache_hits


def test_no_call_cache_makes_every_call(eval_env):
    result = _eval(eval_env, call_cache=False)
    assert not (result.out_dir / CALL_CACHE_FILE).exists()
    assert result.report.cache_hits == 0 and result.report.cache_saved_s == 0
    assert not any(u["cache_hit"] for u in _rows(result, "tiered", "slm"))


def test_the_eval_cli_flag_turns_the_cache_off(monkeypatch):
    import tierflow.evals.harness.evaluate as evaluate
    from tierflow.cli import eval as harness_cli

    parser = argparse.ArgumentParser()
    harness_cli.register(parser.add_subparsers())
    captured: list[EvalSettings] = []

    def fake_run_eval(suite: Any, settings: EvalSettings) -> Any:
        captured.append(settings)
        raise KeyboardInterrupt  # stop before the summary: the settings are what is checked

    monkeypatch.setattr(evaluate, "run_eval", fake_run_eval)
    for argv, expected in ((["eval", "ticket_triage"], True), (["eval", "ticket_triage", "--no-call-cache"], False)):
        args = parser.parse_args(argv)
        args.tiers = None
        with pytest.raises(KeyboardInterrupt):
            args.handler(args)
        assert captured[-1].call_cache is expected
