"""`tierflow run ticket_triage` end to end with scripted tiers: real KB, real helpdesk,
real SQLite checkpoints, real subprocesses (killed with SIGKILL and resumed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.cli import scripted_cli_env, tierflow
from tests.kill import kill_at_marker
from tests.unit.triage_scripts import TIERS_TOML
from tierflow.tools.helpdesk import Helpdesk

MESSAGE = "I lost my card yesterday on the bus, please block it."


@pytest.fixture()
def cli_env(tmp_path: Path) -> dict[str, str]:
    return scripted_cli_env(tmp_path, TIERS_TOML)


def tickets(env: dict[str, str]) -> list:
    return Helpdesk(Path(env["TIERFLOW_HOME"]) / "helpdesk.sqlite").list_tickets()


def test_run_prints_trace_final_answer_and_ledger(cli_env):
    done = tierflow(cli_env, "run", "ticket_triage", "--input", MESSAGE, "--thread", "t-ok")
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    assert "classify" in out and "verified" in out and "lost_or_stolen_card" in out
    assert "Ledger (this run)" in out and "all on the frontier tier" in out
    [ticket] = tickets(cli_env)
    assert ticket.intent == "lost_or_stolen_card" and ticket.status == "drafted"
    assert ticket.entities == {"date": "yesterday"} and ticket.cited_snippet_ids


def test_killed_run_resumes_from_its_checkpoint_and_files_once(cli_env, tmp_path):
    block = tmp_path / "blocked"
    env = {**cli_env, "TIERFLOW_TEST_BLOCK_FILE": str(block)}
    run = [sys.executable, "-m", "tierflow.cli", "run", "ticket_triage", "--input", MESSAGE, "--thread", "t-kill"]
    kill_at_marker(run, block, timeout_s=90, env=env)  # the marker: the draft step is reached
    assert tickets(cli_env) == []  # killed before filing
    resumed = tierflow(env, "run", "ticket_triage", "--thread", "t-kill", "--resume")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    assert "resuming" in resumed.stdout
    assert len(tickets(cli_env)) == 1
    again = tierflow(env, "run", "ticket_triage", "--thread", "t-kill", "--resume")
    assert again.returncode == 2 and "nothing to resume" in again.stderr
    assert len(tickets(cli_env)) == 1


def test_unknown_graph_is_a_clear_error(cli_env):
    res = tierflow(cli_env, "run", "tiket_triage", "--input", "x")
    assert res.returncode == 2
    assert "unknown graph 'tiket_triage'" in res.stderr and "ticket_triage" in res.stderr


def test_non_utf8_input_file_is_a_clear_error(cli_env, tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Carte perdue à Genève".encode("latin-1"))
    res = tierflow(cli_env, "run", "ticket_triage", "--input", f"@{bad}")
    assert res.returncode == 2 and "not valid UTF-8" in res.stderr and "0xe0" in res.stderr


def test_empty_and_huge_inputs_are_rejected_in_state(cli_env, tmp_path):
    empty = tierflow(cli_env, "run", "ticket_triage", "--input", "   ")
    assert empty.returncode == 1 and "rejected" in empty.stdout and "empty" in empty.stdout
    huge = tmp_path / "huge.txt"
    huge.write_text("card " * 200_000)  # 1 MB
    res = tierflow(cli_env, "run", "ticket_triage", "--input", f"@{huge}")
    assert res.returncode == 1 and "rejected" in res.stdout and "limit" in res.stdout
    assert tickets(cli_env) == []


def test_malformed_tiers_file_is_a_clear_error(cli_env, tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[[tiers]]\nname = 'slm'\nprovider = 'embeded'\nmodel = 'x'\n")
    res = tierflow({**cli_env, "TIERFLOW_TIERS": str(broken)}, "run", "ticket_triage", "--input", MESSAGE)
    assert res.returncode == 2
    assert str(broken) in res.stderr.replace("\n", "") and "tiers.0.provider" in res.stderr


def test_ingest_command_builds_the_knowledge_base(cli_env, tmp_path):
    done = tierflow(cli_env, "ingest")
    assert done.returncode == 0 and "ingested" in done.stdout
    from tierflow.tools.knowledge_base import KnowledgeBase

    kb = KnowledgeBase(Path(cli_env["TIERFLOW_HOME"]) / "kb")
    assert kb.count() > 50 and kb.search("I lost my card", k=1)
    missing = tierflow(cli_env, "ingest", "--docs", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_answers_take_bare_words_or_json_and_anything_else_is_a_clear_error():
    from tierflow.cli.run import parse_answer
    from tierflow.model_tiers import ConfigError

    assert parse_answer("approve") == {"action": "approve"}
    assert parse_answer(" Reject ") == {"action": "reject"}
    assert parse_answer("yes") == "yes" and parse_answer("n") == "no"
    assert parse_answer('{"action": "edit", "value": {"amount": "12"}}') == {"action": "edit", "value": {"amount": "12"}}
    with pytest.raises(ConfigError, match=r"--answer: the answer '\{bad json' is neither a known word nor JSON .*approve, reject, yes, no"):
        parse_answer("{bad json")


def _corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a database, just bytes" * 100)
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("home is a file", "is a file, not a folder"),
        ("corrupt checkpoints", "checkpoint database"),
        ("corrupt helpdesk", "helpdesk database"),
        ("resume a thread that never ran", "has nothing to resume"),
        ("unknown policy in the environment", "TIERFLOW_POLICY"),
    ],
)
def test_bad_environments_get_one_clear_line_and_exit_2(cli_env, tmp_path, case, expected):
    """The bad-input corpus: never a traceback, always what is wrong and what to do."""
    env = dict(cli_env)
    home = Path(env["TIERFLOW_HOME"])
    args = ["run", "ticket_triage", "--input", MESSAGE]
    if case == "home is a file":
        home.parent.mkdir(parents=True, exist_ok=True)
        home.write_text("not a folder")
    elif case == "corrupt checkpoints":
        _corrupt(home / "checkpoints.sqlite")
    elif case == "corrupt helpdesk":
        _corrupt(home / "helpdesk.sqlite")
    elif case == "resume a thread that never ran":
        args = ["run", "ticket_triage", "--thread", "never-ran", "--resume", "--answer", "yes"]
    else:
        env["TIERFLOW_POLICY"] = "cheapest-please"
    res = tierflow(env, *args)
    printed = res.stdout + res.stderr
    assert "Traceback" not in printed, printed
    assert res.returncode == 2, printed
    assert expected in res.stderr.replace("\n", " "), res.stderr
    if case.startswith("corrupt"):
        assert "mv '" in res.stderr and ".corrupt-" in res.stderr  # how to move it aside
        assert "verified" not in res.stdout  # nothing ran, so no model call was paid for
