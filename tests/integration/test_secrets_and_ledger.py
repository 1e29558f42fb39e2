"""A server that echoes the API key in its 401 body (some proxies do), driven through the
CLI as a user would: the key must appear nowhere, not on the terminal, not in any file under
$TIERFLOW_HOME (checkpoints decoded), not in the eval folder. And the ledger must hold one
row per request a server received, including the requests whose reply was unusable.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.servers.openai_faults import FaultServer, fault_server
from tierflow.graphs import slot_extraction, ticket_triage
from tierflow.model_tiers import TierRegistry, config_from_mapping

KEY_ENV = "TIERFLOW_PROBE_KEY"
DATASET = REPO_ROOT.parent / "shared" / "datasets" / "restaurant8k" / "train_0.json"
CLI_TIMEOUT_S = 240


def tiers_toml(server: FaultServer) -> str:
    tier = """
[[tiers]]
name = "{name}"
provider = "openai"
model = "{model}"
base_url = "{url}"
api_key_env = "{env}"
local = true
timeout_s = 5
"""
    return (
        tier.format(name="slm", model="slm-model", url=server.base_url, env=KEY_ENV)
        + tier.format(name="frontier", model="frontier-model", url=server.base_url, env=KEY_ENV)
        + '\n[roles]\nplan = "frontier"\nclassify = "slm"\nextract = "slm"\ntool = "slm"\nverify = "slm"\n'
        + 'respond = "frontier"\njudge = "frontier"\n\n[escalation]\nmax_retries = 0\non_top_failure = "fail"\n'
    )


@pytest.fixture
def echoing_server() -> Iterator[FaultServer]:
    with fault_server(**{"slm-model": "401", "frontier-model": "401"}) as server:
        yield server


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierflow.cli", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )


def _files_containing(root: Path, secret: str) -> list[str]:
    needle = secret.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def _decoded_checkpoints(path: Path) -> str:
    """Every checkpoint and pending write of every thread, deserialised, as text."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    conn = sqlite3.connect(str(path), check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        return "\n".join(repr((t.checkpoint, t.metadata, t.pending_writes)) for t in saver.list(None))
    finally:
        conn.close()


@pytest.mark.timeout(3 * CLI_TIMEOUT_S)
def test_a_key_echoed_in_a_401_is_masked_everywhere(echoing_server: FaultServer, tmp_path: Path) -> None:
    secret = "sk-probe-" + os.urandom(12).hex()
    home, evals_out = tmp_path / "home", tmp_path / "eval-run"
    tiers = tmp_path / "tiers.toml"
    tiers.write_text(tiers_toml(echoing_server))
    env = {**os.environ, "TIERFLOW_HOME": str(home), KEY_ENV: secret, "NO_COLOR": "1", "COLUMNS": "200"}

    runs = [
        _cli(["--tiers", str(tiers), "run", "slot_extraction", "--input", "A table for two at 8pm"], env),
        _cli(["--tiers", str(tiers), "eval", "slot_extraction", "--dataset", str(DATASET), "--limit", "2",
              "--policy", "all-slm", "--out", str(evals_out), "--no-progress"], env),
        _cli(["--tiers", str(tiers), "doctor"], env),
    ]
    assert echoing_server.received("slm-model") >= 2  # the key did reach the server, twice or more
    for done in runs:
        printed = done.stdout + done.stderr
        assert "Traceback" not in printed, printed
        assert secret not in printed, printed
        assert "401" in printed, printed
    assert runs[0].returncode == 2 and "refused the key in $TIERFLOW_PROBE_KEY" in runs[0].stderr
    assert runs[1].returncode == 2

    assert _files_containing(home, secret) == []
    assert _files_containing(evals_out, secret) == []
    assert list(evals_out.rglob("*.jsonl")), "the eval recorded the failed case"
    checkpoints = home / "checkpoints.sqlite"
    assert checkpoints.exists()
    decoded = _decoded_checkpoints(checkpoints)
    assert "HTTP 401" in decoded and secret not in decoded


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", ["ok", "malformed_json", "wrong_schema", "429", "timeout"])
def test_every_request_is_a_ledger_row(fault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """ticket_triage and slot_extraction through their slm and frontier: requests received
    (per model) against ledger rows (per tier), whatever the replies were."""
    monkeypatch.setenv(KEY_ENV, "sk-ledger-" + os.urandom(6).hex())
    with fault_server(**{"slm-model": fault}) as server:
        server.slow_s = 6.0
        config = config_from_mapping(_tiers_mapping(server), source="ledger test")
        for module, payload, context in (
            (ticket_triage, {"request": "My card was stolen, block it now."}, {"stop_after": ["extract"]}),
            (slot_extraction, {"request": "Book a table for 3 at 6pm on Friday."}, None),
        ):
            server.reset(**{"slm-model": fault})
            out = module.build(registry=TierRegistry(config), resources={} if module is ticket_triage else None).invoke(payload, context=context)
            ledger = out["ledger"]
            assert sum(1 for u in ledger if u["tier"] == "slm") == server.received("slm-model"), (fault, ledger)
            assert sum(1 for u in ledger if u["tier"] == "frontier") == server.received("frontier-model")
            unusable = [u for u in ledger if u.get("error")]
            assert all(u["cost_usd"] > 0 for u in unusable), "a failed request is still paid for"
            if fault != "ok":
                assert unusable


def _tiers_mapping(server: FaultServer) -> dict[str, object]:
    common = {"provider": "openai", "base_url": server.base_url, "api_key_env": KEY_ENV, "local": True,
              "price_input_per_mtok": 1.0, "price_output_per_mtok": 2.0}
    return {
        "tiers": [{**common, "name": "slm", "model": "slm-model", "timeout_s": 1.0, "cooldown_s": 0},
                  {**common, "name": "frontier", "model": "frontier-model", "timeout_s": 10.0}],
        "roles": {"plan": "frontier", "classify": "slm", "extract": "slm", "tool": "slm", "verify": "slm",
                  "respond": "frontier", "judge": "frontier"},
        "escalation": {"max_retries": 1, "on_top_failure": "fail"},
    }
