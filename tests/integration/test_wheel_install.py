"""What users install: the built wheel, in an environment of its own, beside a user project
that has its own `tools/`, `agents/`, `graphs/` and `evals/` packages.

The wheel is built from the checkout and installed without the checkout on the path and
without the editable finder; its dependencies come from the test venv's site-packages,
added as a plain path (so the editable install's `.pth` there is not processed). Every
command runs in the user's project folder, with that folder on PYTHONPATH as a project's
own code would be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tierflow.model_tiers.testing import scripted_ladder_toml

SOURCE_FOLDERS = ("agents", "graphs", "tools", "model_tiers", "evals")

USER_GRAPH = '''
"""A user's graph that imports only from tierflow, next to a `tools` package of their own."""
from __future__ import annotations

from pydantic import BaseModel, Field

import tierflow
from tools import MARKER  # the project's own package, not tierflow's

INTENTS = {"refund_request": "money back for an order", "other": "anything else"}


class Refund(BaseModel):
    order_id: str | None = Field(default=None, description="the order number as written")


WORKFLOW = tierflow.Workflow(
    name="user_desk",
    description="classify, then extract the order number",
    steps=(
        tierflow.classifier("classify", labels=list(INTENTS), descriptions=INTENTS, instructions="Pick the intent."),
        tierflow.extractor("extract", schema=Refund, grounded_fields=("order_id",), instructions="Copy the order number."),
    ),
)
assert MARKER == "user tools"
'''

USER_SCRIPTS = '''
"""Scripted tiers for the user's graph (control flow only)."""
import re


def reply(messages, tools):
    system = next((str(m.content) for m in messages if m.type == "system"), "")
    human = str(messages[-1].content)
    if "Pick the intent" in system:
        return {"label": "refund_request" if "refund" in human.lower() else "other", "confidence": 0.9}
    order = re.search(r"order (\\d+)", human)
    return {"order_id": order.group(1) if order else None}
'''

# Both tiers answer with the user's own script (the same text a user would write by hand).
TIERS = scripted_ladder_toml("user_scripts:reply", "user_scripts:reply")

# The graph has no `finalize`: the cases grade its steps' results, by step name.
CASES = [
    {"__evaluators__": {"classify/label": "exact", "extract/order_id": "exact"}},
    {"id": "c1", "input": "Please refund order 4417, it never came.",
     "steps": {"classify": {"label": "refund_request"}, "extract": {"order_id": "4417"}}},
    {"id": "c2", "input": "Refund order 9051 please.", "steps": {"classify": {"label": "refund_request"}, "extract": {"order_id": "9051"}}},
]

USER_API_SCRIPT = '''
"""Run and evaluate the user's graph from Python, as a notebook or a CI script would."""
import json
import sys

import tierflow
from user_graph import WORKFLOW, Refund

ran = tierflow.run(WORKFLOW, "Please refund order 4417", tiers="tiers.toml")
assert isinstance(ran, tierflow.RunResult), type(ran)
refund = ran.steps.get("extract", Refund)
label = ran.steps.get("classify", tierflow.Label)
by_reference = tierflow.run("user_graph.py:WORKFLOW", "Refund order 9051 please.", tiers="tiers.toml")
evaluated = tierflow.evaluate(WORKFLOW, "cases.jsonl", policies=["all-slm", "tiered"], tiers="tiers.toml", out=sys.argv[1])
assert isinstance(evaluated, tierflow.EvalResult), type(evaluated)
print(json.dumps({
    "run": ran.model_dump(mode="json"),
    "order_id": refund.order_id if refund else None,
    "label": label.label if label else None,
    "by_reference": by_reference.steps.get("extract"),
    "eval": {p.policy: p.quality["all_fields"].value for p in evaluated.report.policies},
    "eval_ran": evaluated.ran,
    "report": str(evaluated.paths["json"]),
}))
'''


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(out), str(REPO_ROOT)],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = out.glob("tierflow-*.whl")
    return path


@pytest.fixture(scope="module")
def user_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("user")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip())
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    # the dependencies, as a plain path entry: its .pth files (the editable finder) stay unread
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    project = root / "project"
    for package in ("tools", "agents", "graphs", "evals"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(f'MARKER = "user {package}"\n')
    (project / "user_graph.py").write_text(textwrap.dedent(USER_GRAPH))
    (project / "user_scripts.py").write_text(textwrap.dedent(USER_SCRIPTS))
    (project / "user_api.py").write_text(textwrap.dedent(USER_API_SCRIPT))
    (project / "tiers.toml").write_text(TIERS)
    (project / "cases.jsonl").write_text("".join(json.dumps(line) + "\n" for line in CASES))

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OPENAI_API_KEY", "OLLAMA_HOST", "TIERFLOW_TIERS", "VIRTUAL_ENV")}
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(project),
        "TIERFLOW_HOME": str(root / "home"),
        "TIERFLOW_DATASETS": str(REPO_ROOT.parent / "shared" / "datasets"),
    })
    return project, env


def _run(env: dict[str, str], cwd: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_the_wheel_installs_one_top_level_name_and_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"tierflow"}
    for folder in SOURCE_FOLDERS:
        assert f"tierflow/{folder}/__init__.py" in names
    for data in (
        "tierflow/py.typed",
        "tierflow/tiers/three_tier.toml",
        "tierflow/tiers/replay_gsm8k_calibrated.toml",
        "tierflow/tiers/calibration/math_qa_gsm8k.json",
        "tierflow/tiers/calibration/recorded_mmlu.json",
    ):
        assert data in names, data
    assert any(name.startswith("tierflow/tools/policies/") and name.endswith(".md") for name in names)
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "tierflow = tierflow.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_user_project_keeps_its_own_packages_and_gets_tierflows(user_env: tuple[Path, dict[str, str]]) -> None:
    project, env = user_env
    probe = _run(env, project, "python", "-c", (
        "import tools, agents, tierflow, tierflow.tools.knowledge_base as kb; "
        "print(tools.MARKER, agents.MARKER, tierflow.__file__, kb.__file__, sep='|')"
    ))
    assert probe.returncode == 0, probe.stderr
    user_tools, user_agents, tierflow_file, kb_file = probe.stdout.strip().split("|")
    assert (user_tools, user_agents) == ("user tools", "user agents")
    assert str(REPO_ROOT) not in tierflow_file and "venv" in tierflow_file
    assert "venv" in kb_file


def test_models_lists_the_ladder(user_env: tuple[Path, dict[str, str]]) -> None:
    project, env = user_env
    done = _run(env, project, "tierflow", "models")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "slm" in done.stdout and "frontier" in done.stdout


def test_a_one_file_graph_runs_and_evaluates_by_file_reference(user_env: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    project, env = user_env
    ran = _run(env, project, "tierflow", "run", "user_graph.py:WORKFLOW", "--input", "Please refund order 4417", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    document = json.loads(ran.stdout)
    assert document["status"] == "done"
    evaluated = _run(env, project, "tierflow", "eval", "user_graph.py:WORKFLOW", "--dataset", "cases.jsonl", "--policy", "tiered", "--out", str(tmp_path / "eval"))
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    [tiered] = report["policies"]
    assert tiered["quality"]["all_fields"]["value"] == 1.0 and tiered["statuses"] == {"done": 2}


def test_the_python_api_runs_and_evaluates_the_users_graph(user_env: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    project, env = user_env
    done = _run(env, project, "python", "user_api.py", str(tmp_path / "api-eval"))
    assert done.returncode == 0, done.stdout + done.stderr
    printed = json.loads(done.stdout)
    run = printed["run"]
    assert run["status"] == "done" and run["graph"] == "user_desk"
    assert printed["order_id"] == "4417" and printed["label"] == "refund_request"
    assert printed["by_reference"] == {"order_id": "9051"}
    assert [u["node"] for u in run["ledger"]] == ["classify", "extract"] and run["cost_usd"] > 0
    assert run["all_frontier_cost_usd"] > run["cost_usd"]  # both steps verified on the slm
    assert printed["eval"] == {"all-slm": 1.0, "tiered": 1.0} and printed["eval_ran"] == 4
    assert Path(printed["report"]).is_file()


def test_a_shipped_calibrated_tiers_file_runs_by_name(user_env: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    project, env = user_env
    if not (REPO_ROOT.parent / "shared" / "datasets" / "routellm_gsm8k").is_dir():
        pytest.skip("the RouteLLM GSM8K recordings are not beside this checkout")
    done = _run(
        env, project, "tierflow", "--tiers", "replay_gsm8k_calibrated", "eval", "math_qa",
        "--policy", "tiered", "--limit", "12", "--out", str(tmp_path / "gsm8k"), timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tiered" in done.stdout
