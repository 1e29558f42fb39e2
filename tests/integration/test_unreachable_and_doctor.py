"""Endpoints that do not answer, and what the CLI says about broken tier configurations.

An unreachable tier (nothing listening, or a server that accepts and never answers) must
raise `TierUnreachable` within its `timeout_s` (the escalation engine then falls through
to the next tier), for both HTTP providers. The elapsed-time check is a bound that proves
the call does not hang, not a performance test.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import pytest
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from tests.servers.process import LOOPBACK, ServerProcess, ServerStartError, free_port, start_server
from tierflow.model_tiers import TierRegistry, TierUnreachable

TIMEOUT_S = 2.0
# Connection set-up, client teardown and a loaded machine: generous, still far from "hangs".
MARGIN_S = 5.0
CLI_DEADLINE_S = 240.0


class Answer(BaseModel):
    answer: Literal["yes", "no"]


def http_tier(provider: str, port: int) -> dict[str, Any]:
    base = f"http://{LOOPBACK}:{port}"
    tier: dict[str, Any] = {
        "name": "remote",
        "provider": provider,
        "model": "smollm2:135m" if provider == "ollama" else "smollm2",
        "base_url": base if provider == "ollama" else f"{base}/v1",
        "timeout_s": TIMEOUT_S,
        "max_output_tokens": 16,
    }
    if provider == "openai":
        tier["api_key_env"] = ""
        tier["capabilities"] = {"structured_output": "function_calling"}
    return tier


@pytest.mark.timeout(60)
@pytest.mark.parametrize("provider", ["ollama", "openai"])
@pytest.mark.parametrize("endpoint", ["dead port", "silent server"])
def test_unreachable_tier_fails_fast_with_a_typed_error(
    provider: str, endpoint: str, dead_port: int, silent_port: int, make_tier_config: Any
) -> None:
    port = dead_port if endpoint == "dead port" else silent_port
    registry = TierRegistry(make_tier_config(http_tier(provider, port)))
    started = time.monotonic()
    with pytest.raises(TierUnreachable) as caught:
        registry.call("remote", [HumanMessage("Is the sky blue?")], schema=Answer)
    elapsed = time.monotonic() - started
    assert caught.value.tier == "remote"
    assert elapsed < TIMEOUT_S + MARGIN_S, f"took {elapsed:.1f}s with timeout_s={TIMEOUT_S}"


# -- test servers that never come up --------------------------------------------------------


def test_a_server_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    argv = ["python", "-c", "import sys; print('cannot bind'); sys.exit(3)"]
    with pytest.raises(ServerStartError, match="exited with code 3") as caught:
        start_server("doomed", argv, port=free_port(), log_path=tmp_path / "doomed.log", ready_path="/", deadline_s=30)
    assert "cannot bind" in str(caught.value)


def test_a_server_that_never_answers_is_stopped_at_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def recording_popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    argv = ["python", "-c", "import time; time.sleep(600)"]
    with pytest.raises(ServerStartError, match="not ready after 3s"):
        start_server("mute", argv, port=free_port(), log_path=tmp_path / "mute.log", ready_path="/", deadline_s=3)
    assert len(started) == 1
    assert started[0].returncode is not None  # stopped and reaped: no orphan left behind


# -- the CLI ---------------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`tierflow ARGS` in a fresh interpreter; a wide terminal so rich does not wrap messages."""
    env = {**os.environ, "COLUMNS": "1000", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "tierflow.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=CLI_DEADLINE_S, check=False,
    )


def write_tiers(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_doctor_names_a_dead_tier_and_the_fix(tmp_path: Path, dead_port: int) -> None:
    tiers = write_tiers(
        tmp_path / "tiers.toml",
        f"""
[[tiers]]
name = "slm"
provider = "ollama"
model = "smollm2:135m"
base_url = "http://{LOOPBACK}:{dead_port}"
timeout_s = 3

[[tiers]]
name = "frontier"
provider = "openai"
model = "smollm2"
base_url = "http://{LOOPBACK}:{dead_port}/v1"
api_key_env = ""
timeout_s = 3
""",
    )
    done = run_cli("--tiers", str(tiers), "doctor", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "unusable tiers: slm, frontier" in done.stderr
    rows = [line for line in done.stdout.splitlines() if "UNUSABLE" in line]
    assert len(rows) == 2
    for row, tier in zip(rows, ("slm", "frontier"), strict=True):
        assert tier in row and "start the server or fix base_url" in row and str(dead_port) in row


def test_doctor_passes_a_live_ollama_tier(tmp_path: Path, ollama_server: ServerProcess, ollama_model: str) -> None:
    """The same check against a live server succeeds, probe call included."""
    tier = f'provider = "ollama"\nmodel = "{ollama_model}"\nbase_url = "{ollama_server.url}"\ntimeout_s = 300\n'
    tiers = write_tiers(tmp_path / "tiers.toml", f'[[tiers]]\nname = "slm"\n{tier}\n[[tiers]]\nname = "frontier"\n{tier}')
    done = run_cli("--tiers", str(tiers), "doctor", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "UNUSABLE" not in done.stdout
    assert done.stdout.count("structured output ok") == 2


def test_malformed_tiers_file_is_a_config_error(tmp_path: Path) -> None:
    tiers = write_tiers(tmp_path / "tiers.toml", '[[tiers]\nname = "slm"\n')
    done = run_cli("--tiers", str(tiers), "models", cwd=tmp_path)
    assert done.returncode == 2
    assert str(tiers) in done.stderr and "not valid TOML" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_field_is_named_with_its_file(tmp_path: Path) -> None:
    tiers = write_tiers(
        tmp_path / "tiers.toml",
        '[[tiers]]\nname = "slm"\nprovider = "embedded"\nmodel = "smollm2-135m-instruct"\ntemperature = 5\n'
        '[[tiers]]\nname = "frontier"\nprovider = "embedded"\nmodel = "gemma3-270m"\n',
    )
    done = run_cli("--tiers", str(tiers), "models", cwd=tmp_path)
    assert done.returncode == 2
    assert str(tiers) in done.stderr and "tiers.0.temperature" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_tiers_file_is_a_config_error(tmp_path: Path) -> None:
    done = run_cli("--tiers", str(tmp_path / "absent.toml"), "models", cwd=tmp_path)
    assert done.returncode == 2
    assert "tiers file not found" in done.stderr and "absent.toml" in done.stderr


def test_doctor_names_the_missing_key_variable(tmp_path: Path) -> None:
    """A missing key makes that tier unusable: doctor reports it (exit 1), naming the variable."""
    variable = "TIERFLOW_TEST_ABSENT_KEY"
    assert variable not in os.environ
    tiers = write_tiers(
        tmp_path / "tiers.toml",
        '[[tiers]]\nname = "slm"\nprovider = "embedded"\nmodel = "smollm2-135m-instruct"\n'
        f'[[tiers]]\nname = "frontier"\nprovider = "openai"\nmodel = "gpt-4o"\napi_key_env = "{variable}"\n',
    )
    done = run_cli("--tiers", str(tiers), "doctor", "--no-probe", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "unusable tiers: frontier" in done.stderr
    row = next(line for line in done.stdout.splitlines() if "UNUSABLE" in line)
    assert "frontier" in row and variable in row and "set the" in row


def test_run_stops_with_the_missing_key_variable(tmp_path: Path) -> None:
    """A run whose tier has no key stops before any call, naming the tier and the variable."""
    variable = "TIERFLOW_TEST_ABSENT_KEY"
    tier = f'provider = "openai"\nmodel = "gpt-4o-mini"\napi_key_env = "{variable}"\n'
    tiers = write_tiers(tmp_path / "tiers.toml", f'[[tiers]]\nname = "slm"\n{tier}[[tiers]]\nname = "frontier"\n{tier}')
    done = run_cli("--tiers", str(tiers), "run", "math_qa", "--input", "What is 2 + 3?", cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert variable in done.stderr and "tier 'slm' needs an API key" in done.stderr
    assert "Traceback" not in done.stderr
