from pathlib import Path

import pytest

from tierflow.model_tiers import (
    ConfigError,
    TierRunContext,
    apply_run_context,
    load_tier_config,
)

LADDER = """
[[tiers]]
name = "slm"
provider = "ollama"
model = "qwen2.5:0.5b"
price_input_per_mtok = 0.1
price_output_per_mtok = 0.2

[[tiers]]
name = "mid"
provider = "ollama"
model = "qwen2.5:7b"

[[tiers]]
name = "frontier"
provider = "openai"
model = "gpt-4o"
price_input_per_mtok = 2.5
price_output_per_mtok = 10

[roles]
plan = "frontier"
respond = "mid"
"""


def write(tmp_path: Path, text: str, name: str = "tiers.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_without_any_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_tier_config(env={})
    assert cfg.names == ["slm", "frontier"]
    assert cfg.tier("slm").provider == "embedded"
    assert cfg.start_tier("classify") == "slm" and cfg.start_tier("plan") == "frontier"
    assert cfg.tier("slm").local and cfg.tier("frontier").local


def test_file_overrides_defaults_and_merges_tables(tmp_path):
    cfg = load_tier_config(write(tmp_path, LADDER), env={})
    assert cfg.names == ["slm", "mid", "frontier"]
    assert cfg.roles["respond"] == "mid"
    assert cfg.roles["classify"] == "slm"  # from defaults, still valid in the new ladder
    assert cfg.tier("frontier").local is False
    assert cfg.escalation.max_retries == 1


def test_env_overrides_file(tmp_path):
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OLLAMA_HOST": "10.0.0.5:11434", "TIERFLOW_POLICY": "all-slm"}
    cfg = load_tier_config(write(tmp_path, LADDER), env=env)
    assert cfg.tier("frontier").base_url == "http://127.0.0.1:9/v1"
    assert cfg.tier("slm").base_url == "http://10.0.0.5:11434"
    assert cfg.policy == "all-slm"


def test_env_selects_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, LADDER, "other.toml")
    cfg = load_tier_config(env={"TIERFLOW_TIERS": str(path)})
    assert "mid" in cfg.names
    with pytest.raises(ConfigError, match="TIERFLOW_TIERS"):
        load_tier_config(env={"TIERFLOW_TIERS": str(tmp_path / "missing.toml")})


def test_run_context_overrides_env(tmp_path):
    ctx = TierRunContext(policy="all-frontier", role_tiers={"classify": "mid"}, max_frontier_calls=1, max_retries=3)
    cfg = load_tier_config(write(tmp_path, LADDER), env={"TIERFLOW_POLICY": "all-slm"}, context=ctx)
    assert cfg.policy == "all-frontier"
    assert cfg.roles["classify"] == "mid"
    assert cfg.budget.max_frontier_calls == 1
    assert cfg.escalation.max_retries == 3
    assert cfg.start_tier("classify") == "frontier"  # all-frontier wins over the role map


def test_precedence_full_chain(tmp_path):
    """defaults < file < env < run context, each layer checked on the same field."""
    path = write(tmp_path, 'policy = "all-frontier"\n')
    assert load_tier_config(path, env={}).policy == "all-frontier"
    assert load_tier_config(path, env={"TIERFLOW_POLICY": "all-slm"}).policy == "all-slm"
    ctx = TierRunContext(policy="tiered")
    assert load_tier_config(path, env={"TIERFLOW_POLICY": "all-slm"}, context=ctx).policy == "tiered"


def test_malformed_toml_names_file(tmp_path):
    path = write(tmp_path, "[[tiers]\nname = ")
    with pytest.raises(ConfigError) as err:
        load_tier_config(path, env={})
    assert str(path) in str(err.value) and "TOML" in str(err.value)


def test_bad_field_names_file_field_and_expectation(tmp_path):
    path = write(tmp_path, LADDER.replace('provider = "openai"', 'provider = "openia"'))
    with pytest.raises(ConfigError) as err:
        load_tier_config(path, env={})
    msg = str(err.value)
    assert str(path) in msg and "tiers.2.provider" in msg and "'ollama'" in msg and "openia" in msg


def test_unknown_field_is_rejected(tmp_path):
    path = write(tmp_path, LADDER + '\n[escalation]\nmax_retrys = 2\n')
    with pytest.raises(ConfigError, match=r"escalation\.max_retrys"):
        load_tier_config(path, env={})


def test_role_pointing_to_missing_tier(tmp_path):
    text = LADDER.replace('respond = "mid"', 'respond = "huge"')
    with pytest.raises(ConfigError, match="role 'respond' points at tier 'huge'"):
        load_tier_config(write(tmp_path, text), env={})


def test_bad_run_context_is_a_config_error():
    cfg = load_tier_config(None, env={})
    with pytest.raises(ConfigError, match="run context"):
        apply_run_context(cfg, TierRunContext(policy="cheapest-please"))
    with pytest.raises(ConfigError, match="run context"):
        apply_run_context(cfg, TierRunContext(role_tiers={"plan": "gpt-9"}))


def test_ladder_policies_and_local_only(tmp_path):
    cfg = load_tier_config(write(tmp_path, LADDER), env={})
    assert [t.name for t in cfg.ladder_for("classify")] == ["slm", "mid", "frontier"]
    assert [t.name for t in cfg.ladder_for("classify", local_only=True)] == ["slm", "mid"]
    assert [t.name for t in cfg.ladder_for("plan", local_only=True)] == ["slm", "mid"]
    slm_only = apply_run_context(cfg, TierRunContext(policy="all-slm"))
    assert [t.name for t in slm_only.ladder_for("plan")] == ["slm"]
    top = apply_run_context(cfg, TierRunContext(policy="all-frontier"))
    assert [t.name for t in top.ladder_for("classify")] == ["frontier"]


def test_repo_tiers_file_is_valid():
    root = Path(__file__).resolve().parents[2]
    cfg = load_tier_config(root / "tiers.toml", env={})
    assert cfg.names == ["slm", "frontier"]
