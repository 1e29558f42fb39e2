"""The bfcl suite (function_calling graph) on real BFCL cases with SCRIPTED tiers: every
policy's outcome is known in advance and the metrics are checked by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.eval_suite_scripts import BFCL_SLM
from tierflow.evals.datasets import default_dataset_file
from tierflow.evals.harness import EvalSettings, resolve_policies, run_eval
from tierflow.evals.suites import get_suite, suites_for
from tierflow.evals.suites.function_calling import BFCL, bfcl_input, call_is_correct
from tierflow.model_tiers import ConfigError
from tierflow.model_tiers.testing import block_network, scripted_ladder_toml

TIERS = scripted_ladder_toml("tests.unit.eval_suite_scripts:bfcl_slm", "tests.unit.eval_suite_scripts:bfcl_frontier", frontier_local=True)


def _bfcl_files(root: Path, category: str, rows: int) -> Path:
    """The first `rows` cases of a visible BFCL file (and its answers), in BFCL's layout."""
    source = default_dataset_file(f"bfcl_{category}")
    target = root / source.name
    target.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[:rows]), encoding="utf-8")
    answers = source.parent / "possible_answer" / source.name
    if answers.exists():
        (root / "possible_answer").mkdir(exist_ok=True)
        lines = answers.read_text(encoding="utf-8").splitlines(keepends=True)[:rows]
        (root / "possible_answer" / source.name).write_text("".join(lines), encoding="utf-8")
    return target


def _run(root: Path, category: str, rows: int) -> Any:
    data = _bfcl_files(root, category, rows)
    tiers = root / "tiers.toml"
    tiers.write_text(TIERS, encoding="utf-8")
    settings = EvalSettings(
        policies=tuple(resolve_policies(("all-slm", "all-frontier", "tiered"), defaults=())),
        out_dir=root / "run", tiers_file=str(tiers), progress=False, concurrency=2, dataset_path=data,
    )
    with pytest.MonkeyPatch.context() as mp, block_network():
        mp.setenv("TIERFLOW_HOME", str(root / "home"))
        for var in ("TIERFLOW_TIERS", "OPENAI_API_KEY", "OPENAI_BASE_URL", "OLLAMA_HOST"):
            mp.delenv(var, raising=False)
        return run_eval(BFCL, settings)


@pytest.fixture(scope="module")
def simple_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """simple_python 0-2: slm right on 0; invents the factorial's number on 1 (the soft
    grounding check fails it twice under tiered, the frontier answers right); on 2 passes
    the verifier with a wrong y. The frontier is right on all three."""
    return _run(tmp_path_factory.mktemp("bfcl-simple"), "simple_python", 3)


@pytest.fixture(scope="module")
def irrelevance_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """irrelevance 0-1: the slm calls the BMI function for a triangle (valid, grounded, wrong)
    and declines the quadratic (right); the frontier declines both."""
    return _run(tmp_path_factory.mktemp("bfcl-irrelevance"), "irrelevance", 2)


def _score(run: Any, policy: str, metric: str = "function_call_match") -> tuple[int, int]:
    quality = run.report.policy(policy).quality[metric]
    return quality.successes, quality.n


def test_simple_policies_by_hand(simple_run):
    # all-slm: the slm is the top tier, so the soft numeric check only warns on case 1's
    # invented number and the wrong call stands.
    assert _score(simple_run, "all-slm") == (1, 3)
    assert simple_run.report.policy("all-slm").statuses == {"done": 3}
    assert _score(simple_run, "all-frontier") == (3, 3)
    assert _score(simple_run, "tiered") == (2, 3)
    assert simple_run.report.policy("tiered").statuses == {"done": 3}
    assert _score(simple_run, "tiered", "relevance") == (3, 3)


def test_simple_verifier_precision_recall(simple_run):
    tiered = simple_run.report.policy("tiered")
    # slm first candidates: 0 right/pass, 1 wrong/fail (invented number), 2 wrong/pass.
    assert tiered.verifier_on("call", "slm").counts == (1, 0, 1, 1)
    assert tiered.verifier_on("call", "frontier").counts == (0, 0, 0, 1)


def test_irrelevance_passes_only_without_a_call(irrelevance_run):
    assert _score(irrelevance_run, "all-slm") == (1, 2)
    assert _score(irrelevance_run, "all-frontier") == (2, 2)
    assert _score(irrelevance_run, "tiered") == (1, 2)  # a valid, grounded, wrong call is not caught
    assert _score(irrelevance_run, "all-frontier", "relevance") == (2, 2)


def test_candidate_truth_and_inputs():
    from tierflow.evals.datasets.bfcl import load_bfcl

    simple = load_bfcl(default_dataset_file("bfcl_simple_python"), limit=None).cases
    case = next(c for c in simple if c.id == "simple_python_1")
    assert bfcl_input(case)["functions"][0]["name"] == "math_factorial"
    assert bfcl_input(case)["request"] == "Calculate the factorial of 5 using math functions."
    assert call_is_correct({"name": "math_factorial", "args": {"number": 5}}, case)
    assert not call_is_correct({"name": "math_factorial", "args": {"number": 6}}, case)
    assert not call_is_correct({"name": None, "args": None}, case) and not call_is_correct(None, case)
    assert set(BFCL_SLM) >= {bfcl_input(c)["request"] for c in simple[:3] if c.id in {"simple_python_0", "simple_python_1"}}


def test_the_suite_is_reachable_from_both_graphs(tmp_path):
    assert list(suites_for("function_calling")) == ["bfcl"]
    assert list(suites_for("order_agent")) == ["tau2_retail", "bfcl"]
    assert get_suite("order_agent", dataset_path="/data/bfcl/BFCL_v4_multiple.json") is BFCL
    with pytest.raises(ConfigError, match="one call per request"):
        BFCL.load(default_dataset_file("bfcl_parallel"), 5, 0)


def test_a_report_names_the_graph_and_the_category(simple_run):
    report = json.loads((simple_run.out_dir / "report.json").read_text(encoding="utf-8"))
    assert report["graph"] == "function_calling" and report["suite"] == "bfcl"
    assert report["dataset"].endswith("BFCL_v4_simple_python.json") and report["sample"]["cases"] == 3
