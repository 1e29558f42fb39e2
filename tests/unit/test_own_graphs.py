"""A user's own graph in one file: found by reference, run with --json, evaluated on a
case file with per-field evaluators, served to Studio; the catalog is the one list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import scripted_cli_env, tierflow
from tests.conftest import REPO_ROOT
from tests.unit.own_graph_scripts import TIERS_TOML
from tierflow.evals.casefile import FieldCheck, casefile_suite, grade, is_case_file, load_case_file, parse_check, parse_grades
from tierflow.evals.datasets import DatasetFormatError
from tierflow.graphs.catalog import SHIPPED_GRAPHS, graph_catalog, langgraph_graphs, project_graphs, resolve_graph
from tierflow.graphs.examples.refund_desk import WORKFLOW
from tierflow.graphs.studio import config_with_graphs
from tierflow.model_tiers import ConfigError

EXAMPLE = "graphs/examples/refund_desk.py:WORKFLOW"
CASES = REPO_ROOT / "samples" / "refund_desk_cases.jsonl"
STEPS = [s.name for s in WORKFLOW.all_steps]


@pytest.fixture()
def cli_env(tmp_path: Path) -> dict[str, str]:
    return scripted_cli_env(tmp_path, TIERS_TOML)


# -- the catalog and references ------------------------------------------------------------


def test_a_graph_is_found_by_name_module_reference_or_file_reference() -> None:
    assert resolve_graph("ticket_triage").workflow.name == "ticket_triage"
    by_module = resolve_graph("tierflow.graphs.examples.refund_desk:WORKFLOW")
    by_file = resolve_graph(str(REPO_ROOT / EXAMPLE))
    assert by_module.workflow.name == by_file.workflow.name == "refund_desk"
    assert by_file.langgraph_target.endswith("refund_desk.py:WORKFLOW")  # no compiled `graph`: the Workflow is the factory
    assert resolve_graph("ticket_triage").langgraph_target == "tierflow.graphs.ticket_triage:graph"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("tiket_triage", "unknown graph 'tiket_triage'; available graphs: "),
        ("graphs/nope.py:WORKFLOW", "no file graphs/nope.py"),
        ("tierflow.graphs.no_such_module:WORKFLOW", "no module 'tierflow.graphs.no_such_module'"),
        ("tierflow.graphs.examples.refund_desk:INTENTS", "is a dict, not a tierflow Workflow"),
        ("tierflow.graphs.examples.refund_desk:NOPE", "has no attribute 'NOPE'"),
        ("tierflow.graphs.examples.refund_desk:", "is not a graph reference"),
    ],
)
def test_bad_references_get_clear_errors(ref: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_graph(ref)
    assert message in str(caught.value)


def test_the_project_declares_its_graphs_once_in_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(f'[tool.tierflow.graphs]\nrefund_desk = "{REPO_ROOT / EXAMPLE}"\n')
    assert project_graphs(tmp_path) == {"refund_desk": str(REPO_ROOT / EXAMPLE)}
    assert set(graph_catalog(tmp_path)) == {*SHIPPED_GRAPHS, "refund_desk"}
    assert langgraph_graphs(tmp_path)["refund_desk"] == str(REPO_ROOT / EXAMPLE)
    (tmp_path / "pyproject.toml").write_text('[tool.tierflow.graphs]\nticket_triage = "my.mod:WORKFLOW"\n')
    with pytest.raises(ConfigError, match="reuses shipped graph names"):
        project_graphs(tmp_path)


def test_langgraph_json_matches_the_catalog_and_studio_adds_a_users_graph(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tierflow.cli", "graphs", "--check"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    generated = json.loads(config_with_graphs(REPO_ROOT / "langgraph.json", [EXAMPLE], tmp_path).read_text())
    assert generated["graphs"]["refund_desk"] == f"{REPO_ROOT / 'graphs/examples/refund_desk.py'}:WORKFLOW"
    assert generated["graphs"]["ticket_triage"] == "tierflow.graphs.ticket_triage:graph"
    # The server calls the Workflow as a graph factory: one compiled graph per process.
    assert WORKFLOW() is WORKFLOW() and WORKFLOW().name == "refund_desk"


def test_help_and_run_do_not_import_the_eval_stack() -> None:
    probe = (
        "import sys; from tierflow.cli import build_parser; build_parser(); "
        "heavy = ('tierflow.evals.harness', 'tierflow.evals.datasets', 'tierflow.evals.finetune', 'tierflow.evals.casefile', 'tierflow.evals.suites.ticket_triage'); "
        "print([m for m in sys.modules if m in heavy or m.startswith(tuple(h + '.' for h in heavy))])"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- run and eval by reference -------------------------------------------------------------


def test_run_by_file_reference_prints_one_json_document(cli_env: dict[str, str]) -> None:
    done = tierflow(cli_env, "run", EXAMPLE, "--input", "Please refund order 4417, I paid 23.90 EUR.", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # stdout holds the document and nothing else
    assert document["status"] == "done"
    assert document["final"]["intent"] == "refund_request" and document["final"]["order_id"] == "4417"
    assert [u["node"] for u in document["ledger"]] == ["classify", "extract", "reply"]
    assert document["cost_usd"] > 0 and "refund_desk" in done.stderr  # progress went to stderr


def test_eval_on_a_case_file_gives_the_built_in_report(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "eval"
    done = tierflow(cli_env, "eval", EXAMPLE, "--dataset", str(CASES), "--policy", "all-slm", "tiered", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["primary"] == "all_fields" and report["suite"] == "cases"
    assert {p["policy"] for p in report["policies"]} == {"all-slm", "tiered"}
    tiered = next(p for p in report["policies"] if p["policy"] == "tiered")
    assert {"all_fields", "intent", "order_id", "amount", "reply", "extract/order_id"} <= set(tiered["quality"])
    assert tiered["quality"]["intent"]["value"] == 1.0  # the scripted tiers classify every case right
    assert (out / "report.md").exists() and (out / "cost_quality.png").exists()


# -- the case file and its evaluators ------------------------------------------------------


def test_jsonl_and_csv_case_files_load_with_their_evaluators(tmp_path: Path) -> None:
    dataset, named = load_case_file(CASES)
    assert len(dataset.cases) == 6 and named["amount"] == "numeric:0.005"
    assert dataset.case("delivery-2").expected.steps == {"extract": {"order_id": "7720", "amount": None}}
    csv_file = tmp_path / "cases.csv"
    csv_file.write_text('id,input,expected.intent,expected.amount,step.extract.order_id\nc1,"refund 4417, 9.50",refund_request,9.5,4417\nc2,hello,other,,\n')
    assert is_case_file(csv_file) and is_case_file(CASES)
    loaded, _ = load_case_file(csv_file)
    assert loaded.case("c1").expected.output == {"intent": "refund_request", "amount": 9.5}
    assert loaded.case("c1").expected.steps == {"extract": {"order_id": 4417}}
    assert loaded.case("c2").expected.output == {"intent": "other"}
    banking = tmp_path / "train.csv"
    banking.write_text("text,category\nhi,card_arrival\n")
    assert not is_case_file(banking)  # a dataset's own CSV goes to its suite's loader


def test_inputs_is_read_as_input_as_langsmith_and_pydantic_evals_write_it(tmp_path: Path) -> None:
    lines = [
        {"id": "text", "inputs": "refund 4417", "expected": {"intent": "refund_request"}},
        {"id": "one-field", "inputs": {"question": "where is 7720?"}, "expected": {"intent": "delivery"}},
        {"id": "graph-input", "inputs": {"request": "hi", "functions": []}},
    ]
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert is_case_file(cases)
    dataset, _ = load_case_file(cases)
    payloads = [c.inputs.payload for c in dataset.cases]
    assert payloads == [{"request": "refund 4417"}, {"request": "where is 7720?"}, {"request": "hi", "functions": []}]
    csv_file = tmp_path / "cases.csv"
    csv_file.write_text("inputs,expected.intent\nrefund 4417,refund_request\n")
    assert is_case_file(csv_file) and load_case_file(csv_file)[0].cases[0].inputs.payload == {"request": "refund 4417"}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"question": "refund 4417", "expected": {"intent": "x"}},
         r"needs the key 'input' \(or 'inputs'\).*this line has the keys 'question', 'expected'"),
        ({"inputs": {"question": "q", "context": "c"}}, r"'inputs' must be .* got an object with the keys 'question', 'context'"),
        ({"input": ["refund"]}, "'input' must be the request text.* got list"),
        ({"input": "a", "inputs": "b"}, "both 'input' and 'inputs'"),
        ({"inputs": "refund 4417", "outputs": {"intent": "x"}}, "go under the key 'expected'.* this line has 'outputs'"),
    ],
)
def test_a_case_line_in_another_shape_names_the_key_expected_and_the_keys_found(tmp_path: Path, line: dict, message: str) -> None:
    cases = tmp_path / "cases.jsonl"
    cases.write_text(json.dumps(line) + "\n")
    with pytest.raises(DatasetFormatError, match=message):
        load_case_file(cases)


def test_eval_of_a_graph_without_a_suite_on_a_file_without_input_says_what_the_lines_lack(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    cases = tmp_path / "langsmith.jsonl"
    cases.write_text(json.dumps({"question": "refund 4417", "answer": "refund_request"}) + "\n")
    done = tierflow(cli_env, "eval", EXAMPLE, "--dataset", str(cases), "--no-progress")
    message = " ".join(done.stderr.split())
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "needs the key 'input' (or 'inputs')" in message and "'question', 'answer'" in message
    assert "no built-in eval suite" not in message


@pytest.mark.parametrize(
    ("spec", "value", "expected", "ok"),
    [
        ("exact", "a", "a", True),
        ("exact", "a", "A", False),
        ("normalized", "  Hello, World! ", "hello world", True),
        ("numeric:0.01", "23.905", 23.9, True),
        ("numeric", "23.95", "23.9", False),
        ("numeric", "n/a", 1, False),
        ("set", ["b", "a"], ["a", "b"], True),
        ("set", ["a"], ["a", "b"], False),
        ("subset", ["a", "b", "c"], ["a", "b"], True),
        ("regex", "ticket #123", r"ticket #\d+", True),
        ("regex", "no", r"\d+", False),
        ("json_schema", {"n": 3}, {"type": "object", "required": ["n"]}, True),
        ("json_schema", {}, {"type": "object", "required": ["n"]}, False),
        ("exact", None, None, True),
        ("numeric", 3, None, False),
    ],
)
def test_each_evaluator_grades_as_documented(spec: str, value: object, expected: object, ok: bool) -> None:
    assert grade(parse_check(spec, where="test"), value, expected)[0] is ok


def test_judge_fields_ask_a_model_and_bad_specs_are_clear_errors() -> None:
    calls = []

    def judge(check: FieldCheck, value: object, expected: object) -> tuple[bool, str | None]:
        calls.append((check.tier, value, expected))
        return value == "yes", "said no"

    assert grade(parse_check("judge:frontier", where="t"), "yes", "affirmative", judge) == (True, "said no")
    assert calls == [("frontier", "yes", "affirmative")]
    with pytest.raises(ConfigError, match="unknown evaluator 'fuzzy'"):
        parse_check("fuzzy", where="t")
    with pytest.raises(ConfigError, match="takes FIELD=KIND"):
        parse_grades(["intent"])
    with pytest.raises(ConfigError, match="no case expects 'mood'"):
        casefile_suite(EXAMPLE, STEPS, CASES, grades={"mood": "exact"})
    with pytest.raises(ConfigError, match="a judge evaluator is named but no judge"):
        casefile_suite(EXAMPLE, STEPS, CASES, grades={"reply": "judge"})


def test_a_case_file_expecting_an_unknown_step_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "x", "steps": {"summarise": {"text": "y"}}}\n')
    with pytest.raises(ConfigError, match="step 'summarise', which the graph does not have"):
        casefile_suite(EXAMPLE, STEPS, bad)
