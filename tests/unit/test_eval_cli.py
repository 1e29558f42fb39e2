"""`tierflow eval` and `tierflow export-finetune` as a user runs them: real subprocesses,
scripted tiers from a tiers file, a Banking77-format dataset in tmp."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.unit.test_eval_harness import EXPLODE, HOPELESS, INVALID, OK, write_banking77, write_tiers


@pytest.fixture()
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OLLAMA_HOST", "TIERFLOW_TIERS", "TIERFLOW_POLICY")}
    env.update({"TIERFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO_ROOT)})
    return env


def tierflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierflow.cli", *args], cwd=REPO_ROOT, env=env, text=True,
        capture_output=True, timeout=300, stdin=subprocess.DEVNULL,
    )


def test_eval_writes_the_report_resumes_and_exports_finetuning_lines(cli_env, tmp_path):
    tiers = write_tiers(tmp_path)
    dataset = write_banking77(tmp_path / "data", (OK, INVALID, HOPELESS))
    run = tmp_path / "run"
    first = tierflow(
        cli_env, "eval", "ticket_triage", "--dataset", str(dataset), "--policy", "all-slm", "tiered",
        "--out", str(run), "--tiers", tiers, "--no-progress", "--concurrency", "2",
    )
    assert first.returncode == 0, first.stderr + first.stdout
    assert "suite banking77" in first.stdout and "ran 6 case runs, skipped 0" in first.stdout
    report = json.loads((run / "report.json").read_text())
    tiered = next(p for p in report["policies"] if p["policy"] == "tiered")
    assert tiered["quality"]["exact_label"]["successes"] == 2 and tiered["statuses"] == {"done": 2, "needs_human": 1}
    assert (run / "report.md").is_file() and (run / "cost_quality.png").stat().st_size > 1000

    # The top-level --tiers resolves to the same tiers: the run resumes instead of refusing.
    again = tierflow(cli_env, "--tiers", tiers, "eval", "ticket_triage", "--dataset", str(dataset),
                     "--policy", "all-slm", "tiered", "--out", str(run), "--no-progress")
    assert again.returncode == 0, again.stderr + again.stdout
    assert "ran 0 case runs, skipped 6" in again.stdout

    exported = tierflow(cli_env, "export-finetune", str(run), "--out", str(tmp_path / "ft.jsonl"))
    assert exported.returncode == 0, exported.stderr
    assert "wrote 1 example(s)" in exported.stdout and "classify=1" in exported.stdout
    [line] = [json.loads(x) for x in (tmp_path / "ft.jsonl").read_text().splitlines()]
    assert [m["role"] for m in line["messages"]] == ["system", "user", "assistant"]
    assert INVALID in line["messages"][1]["content"]
    assert json.loads(line["messages"][2]["content"])["label"] == "transaction_charged_twice"


def flat(text: str) -> str:
    """Rich wraps long lines to the terminal width; compare messages with wrapping undone."""
    return " ".join(text.split())


def test_eval_exits_1_when_a_case_errored_and_2_on_bad_input(cli_env, tmp_path):
    tiers = write_tiers(tmp_path)
    dataset = write_banking77(tmp_path / "data", (OK, EXPLODE))
    crashed = tierflow(cli_env, "eval", "ticket_triage", "--dataset", str(dataset), "--policy", "tiered",
                       "--out", str(tmp_path / "run"), "--tiers", tiers, "--no-progress")
    assert crashed.returncode == 1, crashed.stderr + crashed.stdout
    assert "1 case run(s) ended in an error" in flat(crashed.stdout) and "--retry-errors" in flat(crashed.stdout)

    bad_policy = tierflow(cli_env, "eval", "ticket_triage", "--dataset", str(dataset), "--policy", "cheapest", "--tiers", tiers)
    assert bad_policy.returncode == 2 and "unknown policy 'cheapest'" in flat(bad_policy.stderr)

    no_run = tierflow(cli_env, "export-finetune", str(tmp_path / "data"))
    assert no_run.returncode == 2 and "not an eval run folder" in flat(no_run.stderr)

    no_graph = tierflow(cli_env, "eval", "no_such_graph", "--tiers", tiers)
    assert no_graph.returncode == 2 and "unknown graph 'no_such_graph'" in flat(no_graph.stderr)
    no_suite = tierflow(cli_env, "eval", "graphs/examples/refund_desk.py:WORKFLOW", "--tiers", tiers)
    assert no_suite.returncode == 2 and "has no built-in eval suite: give a case file" in flat(no_suite.stderr)
