"""The public API (`import tierflow`): its names, `run` / `resume` / `evaluate` and the typed
results they return (the objects the CLI prints with --json), step results by step name,
workflows without a plan, the compiled-graph cache, and the guard every entry point runs
behind (one line and a log file, never a traceback)."""

from __future__ import annotations

import gc
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import ValidationError

import tierflow
from tests.cli import scripted_cli_env
from tests.cli import tierflow as tierflow_cli
from tests.conftest import REPO_ROOT
from tests.unit.own_graph_scripts import TIERS_TOML, reply
from tierflow.graphs.examples.refund_desk import WORKFLOW, Refund
from tierflow.graphs.results import item_step
from tierflow.graphs.studio import StudioLaunch

EXAMPLE = "graphs/examples/refund_desk.py:WORKFLOW"
REQUEST = "Please refund order 4417, I paid 23.90 EUR."

PUBLIC_API = {
    "Workflow", "planner", "classifier", "extractor", "tool_caller", "writer", "action", "Check", "StepInput", "ToolBox",
    "tiered_step", "StepResults", "Label", "run", "resume", "evaluate", "RunResult", "EvalResult", "TierConfig", "TierSpec",
    "TierRegistry", "TierRunContext", "load_tier_config", "TierflowError", "ConfigError", "MissingDependency", "ToolRefusal",
    "ScriptedChatModel", "scripted_ladder", "scripted_ladder_toml", "register_provider", "FunctionProvider", "ProviderCapabilities",
}
INTERNAL_PACKAGES = (
    "tierflow.agents", "tierflow.agents.loop", "tierflow.graphs", "tierflow.graphs.examples", "tierflow.tools",
    "tierflow.tools.retail", "tierflow.evals", "tierflow.evals.bench", "tierflow.evals.calibrate", "tierflow.evals.datasets",
    "tierflow.evals.evaluators", "tierflow.evals.harness", "tierflow.evals.suites",
)


def invents_amount(messages: Sequence[BaseMessage], tools: Sequence[dict[str, Any]]) -> Any:
    """Scripted replies where both tiers extract an amount the message does not hold: the
    extract step fails on every tier and the run asks a human."""
    answer = reply(messages, tools)
    return {**answer, "amount": "99.99"} if "order_id" in answer else answer


INVENTS_TOML = tierflow.scripted_ladder_toml("tests.unit.test_public_api:invents_amount", "tests.unit.test_public_api:invents_amount")


@pytest.fixture()
def cli_env(tmp_path: Path) -> dict[str, str]:
    return scripted_cli_env(tmp_path, TIERS_TOML)


def flat(text: str) -> str:
    return " ".join(text.split())


def comparable(result: tierflow.RunResult) -> dict[str, Any]:
    """A result without what differs between two runs of the same calls (ids, timings)."""
    data = result.model_dump(mode="json", exclude={"run_id"})
    data["ledger"] = [{k: v for k, v in row.items() if k not in ("run_id", "latency_s")} for row in data["ledger"]]
    data["summary"].pop("latency_s")
    for tier in data["summary"]["per_tier"]:
        tier.pop("latency_s")
    return data


# -- the names ----------------------------------------------------------------------------


def test_all_is_the_intended_public_api_and_every_name_resolves() -> None:
    assert set(tierflow.__all__) == PUBLIC_API and len(tierflow.__all__) == len(PUBLIC_API)
    # About 30 names: small enough to read at once (30 plus the three of the provider registry).
    assert 20 <= len(PUBLIC_API) <= 33
    for name in tierflow.__all__:
        assert getattr(tierflow, name) is not None, name
    assert issubclass(tierflow.ConfigError, tierflow.TierflowError)


def test_import_tierflow_loads_neither_the_eval_stack_nor_a_model() -> None:
    probe = "import sys, tierflow; print(sorted(m for m in sys.modules if m.startswith(('tierflow.evals', 'llama_cpp', 'torch'))))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("package", INTERNAL_PACKAGES)
def test_internal_packages_declare_their_exports_and_say_they_are_internal(package: str) -> None:
    module = importlib.import_module(package)
    assert isinstance(module.__all__, list)
    for name in module.__all__:
        assert hasattr(module, name), f"{package}.__all__ names {name}, which it does not define"
    doc = module.__doc__ or ""
    assert "public API" in doc or "Internal" in doc or "internal" in doc, doc[:200]
    assert "tierflow" in doc  # says where the public surface is


def test_the_example_imports_only_from_tierflow() -> None:
    source = (REPO_ROOT / "graphs/examples/refund_desk.py").read_text()
    imports = re.findall(r"^(?:from|import) (tierflow\S*)", source, re.M)  # code, not the docstring's example
    assert imports == ["tierflow"]
    assert "default_plan" not in source and '"0:' not in source


# -- step results by step name ------------------------------------------------------------


def test_step_results_are_read_by_step_name_typed_on_request() -> None:
    state = {
        "results": {
            "0:classify": {"label": "refund_request", "confidence": 0.9},
            "1:lookup": {"order": "A"},
            "2:extract": {"order_id": "4417", "amount": None},
            "3:lookup": {"order": "B"},
        }
    }
    results = tierflow.StepResults(state)
    assert results.get("extract") == {"order_id": "4417", "amount": None}
    assert results.get("extract", Refund) == Refund(order_id="4417")
    assert results.get("classify", tierflow.Label) == tierflow.Label(label="refund_request", confidence=0.9)
    assert results.get("lookup") == {"order": "B"} and results.all("lookup") == [{"order": "A"}, {"order": "B"}]
    assert results.get("reply") is None and results.get("reply", Refund) is None and results.all("reply") == []
    assert list(results) == ["classify", "extract", "lookup"] and len(results) == 3 and "extract" in results
    assert results.by_item == state["results"]
    assert tierflow.StepResults(state["results"]) == results  # the results mapping itself works too
    with pytest.raises(ValidationError):
        results.get("lookup", tierflow.Label)  # a value that does not fit the model is an error, not None
    assert item_step("12:reply") == "reply" and item_step("reply") == "reply" and item_step("a:b") == "a:b"


# -- workflows ----------------------------------------------------------------------------


def test_a_workflow_without_a_plan_runs_its_steps_in_the_order_declared() -> None:
    assert [(p.id, p.step) for p in WORKFLOW.default_plan] == [("0:classify", "classify"), ("1:extract", "extract"), ("2:reply", "reply")]
    explicit = tierflow.Workflow(name="w", description="", steps=WORKFLOW.steps, default_plan=WORKFLOW.default_plan[:1])
    assert [p.step for p in explicit.default_plan] == ["classify"]
    with pytest.raises(ValueError, match="declares no steps"):
        tierflow.Workflow(name="empty", description="", steps=())


def test_the_served_graph_is_built_once_and_freed_with_its_workflow() -> None:
    workflow = tierflow.Workflow(name="cached", description="", steps=WORKFLOW.steps)
    compiled = workflow()
    assert workflow() is compiled and compiled.name == "cached"
    freed = weakref.ref(workflow), weakref.ref(compiled)
    del workflow, compiled
    gc.collect()
    assert [ref() for ref in freed] == [None, None]  # no module-level table keeps them alive


# -- run and resume -----------------------------------------------------------------------


def test_run_returns_the_typed_result_the_cli_prints(cli_env: dict[str, str], tmp_path: Path) -> None:
    printed = tierflow_cli(cli_env, "run", EXAMPLE, "--input", REQUEST, "--thread", "same-thread", "--json")
    assert printed.returncode == 0, printed.stderr
    document = json.loads(printed.stdout)
    assert set(document) == set(tierflow.RunResult.model_fields)
    from_cli = tierflow.RunResult.model_validate(document)

    result = tierflow.run(EXAMPLE, REQUEST, tiers=cli_env["TIERFLOW_TIERS"], thread="same-thread")
    assert isinstance(result, tierflow.RunResult)
    assert comparable(result) == comparable(from_cli)
    assert result.status == "done" and result.final["order_id"] == "4417"
    assert result.steps.get("extract", Refund) == Refund(order_id="4417", amount="23.90")
    assert [u.node for u in result.ledger] == ["classify", "extract", "reply"]
    assert result.cost_usd == pytest.approx(sum(u.cost_usd for u in result.ledger)) and result.cost_usd > 0
    assert result.all_frontier_cost_usd is not None and result.all_frontier_cost_usd > result.cost_usd
    assert result.frontier_tier == "frontier" and result.savings_vs_frontier is not None
    # The workflow object runs the same as its reference (found in the module that holds it).
    by_object = tierflow.run(WORKFLOW, REQUEST, tiers=cli_env["TIERFLOW_TIERS"], thread="same-thread")
    assert comparable(by_object) == comparable(result)


def test_a_run_that_asks_a_human_returns_the_question_and_resume_answers_it() -> None:
    ladder = tierflow.scripted_ladder(slm=invents_amount, frontier=invents_amount)
    saver = InMemorySaver()
    paused = tierflow.run(WORKFLOW, REQUEST, tiers=ladder, checkpointer=saver, thread="t-human")
    assert paused.status == "needs_human" and paused.thread == "t-human"
    assert paused.question is not None and paused.question["type"] == "human_review" and paused.question["step"] == "extract"
    # named by the module that holds the workflow object, as the CLI would take it
    assert paused.resume == "tierflow run tierflow.graphs.examples.refund_desk:WORKFLOW --thread t-human --resume --answer ..."
    assert {(u.tier, u.verdict) for u in paused.ledger if u.node == "extract"} == {("slm", "fail"), ("frontier", "fail")}

    fixed = {"order_id": "4417", "amount": "23.90"}
    done = tierflow.resume(WORKFLOW, "t-human", {"action": "edit", "value": fixed}, tiers=ladder, checkpointer=saver)
    assert done.status == "done" and done.question is None and done.resume is None
    assert done.steps.get("extract", Refund) == Refund(**fixed) and done.decided_by["1:extract"] == "human"
    with pytest.raises(tierflow.ConfigError, match="has nothing to resume"):
        tierflow.resume(WORKFLOW, "t-human", "approve", tiers=ladder, checkpointer=saver)


def test_the_cli_prints_the_question_as_json_and_resumes_with_an_answer(tmp_path: Path) -> None:
    env = scripted_cli_env(tmp_path, INVENTS_TOML)
    paused = tierflow_cli(env, "run", EXAMPLE, "--input", REQUEST, "--thread", "t-cli", "--json")
    assert paused.returncode == 3, paused.stderr
    document = json.loads(paused.stdout)
    assert document["status"] == "needs_human" and document["question"]["step"] == "extract"
    assert document["resume"] == f"tierflow run {EXAMPLE} --thread t-cli --resume --answer ..."
    answer = json.dumps({"action": "edit", "value": {"order_id": "4417", "amount": "23.90"}})
    resumed = tierflow_cli(env, "run", EXAMPLE, "--thread", "t-cli", "--resume", "--answer", answer, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["final"]["amount"] == "23.90"


def test_a_step_bug_carries_its_log_file_not_a_traceback(tmp_path: Path) -> None:
    graph_file = tmp_path / "buggy.py"
    graph_file.write_text(textwrap.dedent('''
        import tierflow
        from tierflow.graphs.examples.refund_desk import WORKFLOW

        def explodes(value, inp):
            raise KeyError("missing field")

        steps = tuple(
            tierflow.extractor(s.name, schema=s.output_model, instructions=s.instructions, checks=[tierflow.Check("explodes", explodes)])
            if s.name == "extract" else s
            for s in WORKFLOW.steps
        )
        BUGGY = tierflow.Workflow(name="buggy", description="", steps=steps)
    '''))
    env = scripted_cli_env(tmp_path, TIERS_TOML)
    done = tierflow_cli(env, "run", f"{graph_file}:BUGGY", "--input", REQUEST, "--json")
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert document["status"] == "error" and document["failure"]["kind"] == "bug"
    assert "traceback" not in document["failure"] and "Traceback" not in done.stdout + done.stderr
    log = Path(document["failure"]["log"])
    assert "KeyError" in log.read_text() and str(log) in "".join(done.stderr.split())  # (rich wraps long paths)


def test_a_user_graph_file_that_fails_to_import_is_one_line_naming_it(cli_env: dict[str, str], tmp_path: Path) -> None:
    graph_file = tmp_path / "broken_agent.py"
    graph_file.write_text("import tierflow\n\nWORKFLOW = tierflow.Workflow(name='x', description='', steps=tierflow.nothing_here)\n")
    done = tierflow_cli(cli_env, "run", f"{graph_file}:WORKFLOW", "--input", REQUEST)
    printed = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in printed and "please report" not in printed
    message = flat(done.stderr)
    assert f"importing {graph_file} failed: AttributeError" in message and "nothing_here" in message
    assert f"line 3 of {graph_file}" in message
    log = re.search(r"the traceback is in (\S+\.log)", message)
    assert log is not None and "AttributeError" in Path(log.group(1)).read_text()


def test_the_readme_example_imports_only_from_tierflow_and_runs(tmp_path: Path) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## Your own graph, in one file"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    source = code.group(1)
    assert re.findall(r"^(?:from|import) (tierflow\S*)", source, re.M) == ["tierflow"]
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(source, "README.md", "exec"), namespace)
    result = tierflow.run(namespace["WORKFLOW"], REQUEST, tiers=tierflow.scripted_ladder(reply, reply), checkpointer=InMemorySaver())
    assert result.status == "done" and result.final == {"status": "done", "intent": "refund_request", "order_id": "4417", "amount": "23.90"}
    assert result.resume is None and result.graph == "refund_desk"


# -- evaluate -----------------------------------------------------------------------------


def test_evaluate_returns_the_typed_result_the_cli_prints(cli_env: dict[str, str], tmp_path: Path) -> None:
    cases = REPO_ROOT / "samples" / "refund_desk_cases.jsonl"
    printed = tierflow_cli(cli_env, "eval", EXAMPLE, "--dataset", str(cases), "--policy", "all-slm", "tiered", "--out", str(tmp_path / "cli"), "--json")
    assert printed.returncode == 0, printed.stderr
    document = json.loads(printed.stdout)
    assert "all_fields" in printed.stderr  # the summary table went to stderr

    result = tierflow.evaluate(EXAMPLE, cases, policies=["all-slm", "tiered"], tiers=cli_env["TIERFLOW_TIERS"], out=tmp_path / "api")
    assert isinstance(result, tierflow.EvalResult)
    assert (result.graph, result.suite, result.ran, result.skipped, result.errors) == (EXAMPLE, "cases", 12, 0, 0)
    mine = result.to_json()
    assert set(mine) == set(document)
    for key in ("graph", "suite", "ran", "skipped", "errors"):
        assert mine[key] == document[key], key
    for policy in ("all-slm", "tiered"):
        ours, theirs = result.policy(policy), next(p for p in document["report"]["policies"] if p["policy"] == policy)
        assert {k: q.value for k, q in ours.quality.items()} == {k: q["value"] for k, q in theirs["quality"].items()}
        assert ours.cost_usd_total == pytest.approx(theirs["cost_usd_total"])
    assert result.policy("tiered").quality["intent"].value == 1.0
    assert result.paths["json"].is_file() and result.out_dir == tmp_path / "api"
    again = tierflow.evaluate(EXAMPLE, cases, policies=["all-slm", "tiered"], tiers=cli_env["TIERFLOW_TIERS"], out=tmp_path / "api")
    assert (again.ran, again.skipped) == (0, 12)  # the same settings resume the same folder
    with pytest.raises(KeyError, match="no policy 'all-frontier'"):
        result.policy("all-frontier")


def test_evaluate_takes_a_workflow_object_even_one_no_module_holds(tmp_path: Path) -> None:
    cases = REPO_ROOT / "samples" / "refund_desk_cases.jsonl"
    tiers = tmp_path / "tiers.toml"
    tiers.write_text(TIERS_TOML)
    by_object = tierflow.evaluate(WORKFLOW, cases, policies=["tiered"], tiers=tiers, limit=2, out=tmp_path / "object")
    assert by_object.graph == "tierflow.graphs.examples.refund_desk:WORKFLOW"  # named by the module that holds it
    local = tierflow.Workflow(name="local_desk", description="", steps=WORKFLOW.steps, finalize=WORKFLOW.finalize)
    unnamed = tierflow.evaluate(local, cases, policies=["tiered"], tiers=tiers, limit=2, out=tmp_path / "local")
    assert unnamed.graph == "local_desk" and unnamed.errors == 0
    assert unnamed.policy("tiered").quality["all_fields"].value == by_object.policy("tiered").quality["all_fields"].value == 1.0


def test_evaluate_refuses_what_it_cannot_grade(tmp_path: Path) -> None:
    with pytest.raises(tierflow.ConfigError, match="has no built-in eval suite: give a case file"):
        tierflow.evaluate(WORKFLOW)
    with pytest.raises(tierflow.ConfigError, match="unknown graph 'no_such_graph'"):
        tierflow.evaluate("no_such_graph", tmp_path / "cases.jsonl")


# -- the guard ----------------------------------------------------------------------------


def _module(env: dict[str, str], module: str, *args: str) -> subprocess.CompletedProcess[str]:
    # COLUMNS: the terminal's wrapping is not the command's; one line means one line.
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO_ROOT, env={**env, "COLUMNS": "400"}, capture_output=True, text=True,
        timeout=240, stdin=subprocess.DEVNULL,
    )


def test_a_bench_module_with_a_bad_dataset_is_one_line_and_exit_2(cli_env: dict[str, str]) -> None:
    done = _module(cli_env, "tierflow.evals.bench.replay_gsm8k", "--dataset", "/nowhere/gsm8k.csv")
    printed = (done.stdout + done.stderr).strip()
    assert done.returncode == 2 and "Traceback" not in printed
    assert len(printed.splitlines()) == 1 and "/nowhere/gsm8k.csv" in printed


def test_a_bench_module_that_crashes_is_one_line_and_a_log_file(cli_env: dict[str, str]) -> None:
    done = _module(cli_env, "tierflow.evals.bench.engine_overhead", "--runs", "0")
    printed = (done.stdout + done.stderr).strip()
    assert done.returncode == 1 and "Traceback" not in printed and len(printed.splitlines()) == 1
    assert "python -m tierflow.evals.bench.engine_overhead failed unexpectedly" in printed
    log = re.search(r"the traceback is in (\S+\.log)", printed)
    assert log is not None and "Traceback" in Path(log.group(1)).read_text()


def test_the_example_module_runs_behind_the_guard(cli_env: dict[str, str], tmp_path: Path) -> None:
    done = _module({**cli_env, "TIERFLOW_TIERS": str(tmp_path / "missing.toml")}, "tierflow.graphs.examples.tiered_node", "hello")
    printed = (done.stdout + done.stderr).strip()
    assert done.returncode == 2 and "Traceback" not in printed and len(printed.splitlines()) == 1
    assert "tiers file not found" in printed


def test_a_studio_server_that_cannot_start_is_a_configuration_error(tmp_path: Path) -> None:
    from tierflow.cli.studio import serve

    launch = StudioLaunch(argv=(str(tmp_path / "no-python"), "-m", "langgraph_cli", "dev"), cwd=tmp_path, env={})
    with pytest.raises(tierflow.ConfigError, match="cannot start the LangGraph server"):
        serve(launch)
    exits_7 = StudioLaunch(argv=(sys.executable, "-c", "import sys; sys.exit(7)"), cwd=tmp_path, env=dict(os.environ))
    assert serve(exits_7) == 7


def test_studio_passes_sigterm_on_to_the_server_and_returns_its_status(tmp_path: Path) -> None:
    got = tmp_path / "got-sigterm"
    server = (
        "import signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *_: (open({str(got)!r}, 'w').write('yes'), sys.exit(5)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = (
        "import sys\n"
        "from tierflow.cli.studio import serve\n"
        "from tierflow.graphs.studio import StudioLaunch\n"
        f"sys.exit(serve(StudioLaunch(argv=(sys.executable, '-c', {server!r}), cwd=__import__('pathlib').Path('.'), env={{}})))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=REPO_ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 5
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 5
    while not got.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert got.read_text() == "yes"
