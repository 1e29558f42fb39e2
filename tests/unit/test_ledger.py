import pytest

from tierflow.model_tiers import TierSpec, Usage, load_tier_config, summarize


def spec(name="slm", pin=0.5, pout=1.5):
    return TierSpec(name=name, provider="scripted", model="m", price_input_per_mtok=pin, price_output_per_mtok=pout)


def test_cost_is_tokens_times_price_per_million():
    s = spec(pin=2.5, pout=10.0)
    assert s.cost(1_000_000, 0) == pytest.approx(2.5)
    assert s.cost(1200, 300) == pytest.approx((1200 * 2.5 + 300 * 10.0) / 1e6)
    u = Usage.for_call(s, input_tokens=1200, output_tokens=300, latency_s=0.25)
    assert u.cost_usd == pytest.approx(0.006)
    assert u.tier == "slm" and u.provider == "scripted"


def test_summary_per_tier_and_frontier_equivalent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_tier_config(env={})
    slm, top = cfg.tier("slm"), cfg.tier("frontier")
    records = [
        Usage.for_call(slm, input_tokens=100, output_tokens=10, latency_s=0.1),
        Usage.for_call(slm, input_tokens=200, output_tokens=20, latency_s=0.2).model_dump(),
        Usage.for_call(top, input_tokens=300, output_tokens=30, latency_s=0.3),
    ]
    s = summarize(records, cfg)
    assert [t.tier for t in s.per_tier] == ["slm", "frontier"]
    assert s.per_tier[0].calls == 2 and s.per_tier[0].input_tokens == 300
    assert s.frontier_calls == 1
    expected = slm.cost(300, 30) + top.cost(300, 30)
    assert s.cost_usd == pytest.approx(expected)
    assert s.all_frontier_cost_usd == pytest.approx(top.cost(600, 60))
    assert s.savings_vs_frontier == pytest.approx(1 - expected / top.cost(600, 60))
    assert s.latency_s == pytest.approx(0.6)


def test_usage_rejects_negative_numbers():
    with pytest.raises(ValueError):
        Usage(tier="a", provider="p", model="m", input_tokens=-1, output_tokens=0, latency_s=0, cost_usd=0)


def test_line_mentions_tier_tokens_and_cost():
    u = Usage.for_call(spec(), input_tokens=10, output_tokens=5, latency_s=0.5, step="classify", role="classify", verdict="pass")
    line = u.line()
    assert "tier=slm" in line and "tokens=10+5" in line and "verdict=pass" in line and "$" in line


def test_usage_record_declares_every_usage_field():
    # State's ledger rows are typed by UsageRecord and built from Usage.model_dump(): a
    # field added to one and not the other would be a row the type checker misreads.
    from typing import get_type_hints

    from tierflow.model_tiers.ledger import UsageRecord

    assert set(get_type_hints(UsageRecord)) == set(Usage.model_fields)
    row = Usage.for_call(spec(), input_tokens=1, output_tokens=2, latency_s=0.1).record()
    assert set(row) == set(Usage.model_fields) and row["tier"] == "slm"
