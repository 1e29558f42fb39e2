"""langgraph.json agrees with the graph catalog, every graph loads the way the LangGraph
server loads it (no network, no checkpointer), and `tierflow studio` starts the server
with the right flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from langgraph.graph.state import CompiledStateGraph

from tierflow.cli import main as tierflow
from tierflow.graphs.catalog import GRAPH_MODULES, graph_names, load_graph_module
from tierflow.graphs.studio import find_langgraph_config, read_langgraph_config, studio_launch, studio_url
from tierflow.model_tiers import ConfigError, TierRunContext

REPO_ROOT = Path(__file__).resolve().parents[2]
LANGGRAPH_JSON = REPO_ROOT / "langgraph.json"


def test_langgraph_json_registers_exactly_the_catalog_graphs() -> None:
    config = json.loads(LANGGRAPH_JSON.read_text(encoding="utf-8"))
    assert config["dependencies"] == ["."]
    missing = sorted(set(GRAPH_MODULES) - set(config["graphs"]))
    unknown = sorted(set(config["graphs"]) - set(GRAPH_MODULES))
    assert not missing and not unknown, (
        f"langgraph.json and graphs/catalog.py disagree: add {missing} to langgraph.json "
        f'("NAME": "MODULE:graph"), drop {unknown}'
    )
    for name, module in GRAPH_MODULES.items():
        assert config["graphs"][name] == f"{module}:graph"


def test_langgraph_cli_accepts_langgraph_json() -> None:
    from langgraph_cli.config import validate_config_file

    validated = validate_config_file(LANGGRAPH_JSON)
    assert set(validated["graphs"]) == set(GRAPH_MODULES)


def test_every_graph_module_imports_offline_without_side_effects(tmp_path: Path) -> None:
    # A fresh interpreter, as the server's: nothing is imported yet, the network is cut.
    probe = (
        "import json\n"
        "from model_tiers.testing import block_network\n"
        "with block_network():\n"
        "    from graphs.catalog import GRAPH_MODULES, load_graph_module\n"
        "    print(json.dumps({n: load_graph_module(n).graph.checkpointer is None for n in GRAPH_MODULES}))\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "TIERFLOW_HOME": str(home)}
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == dict.fromkeys(GRAPH_MODULES, True)
    assert list(home.iterdir()) == []  # no database, index or model opened at import


@pytest.mark.parametrize("name", graph_names())
def test_every_graph_compiles_without_a_checkpointer_for_the_server(name: str) -> None:
    module = load_graph_module(name)
    for graph in (module.graph, module.build()):
        assert isinstance(graph, CompiledStateGraph)
        assert graph.checkpointer is None  # the server brings its own; one here stops it starting
        assert graph.name == name
        assert graph.builder.context_schema is TierRunContext
        context = graph.get_context_jsonschema()
        assert set(context["properties"]) == {f.name for f in fields(TierRunContext)}
        # Studio's input form and output view come from these two schemas.
        extra = {"functions"} if module.WORKFLOW.takes_functions else set()
        assert set(graph.get_input_jsonschema()["properties"]) == {"request"} | extra
        assert {"status", "final", "ledger", "events"} <= set(graph.get_output_jsonschema()["properties"])
        # The verifier judges each attempt inside its step's node, and the node that ends a run
        # writes its final output: no verify node, no responder node.
        assert {"router", "human_review", *(s.name for s in module.WORKFLOW.all_steps)} <= set(graph.get_graph().nodes)
        assert not {"verify", "responder", "dispatch"} & set(graph.get_graph().nodes)


def test_studio_launch_runs_langgraph_dev_offline_in_the_project(tmp_path: Path) -> None:
    tiers = tmp_path / "tiers.toml"
    launch = studio_launch(LANGGRAPH_JSON, port=3111, tiers_file=tiers, data_home=tmp_path / "data", env={"PATH": "/bin"})
    assert launch.argv[:4] == (sys.executable, "-m", "langgraph_cli", "dev")
    assert {"--no-browser", "--no-reload"} <= set(launch.argv)
    assert "--allow-blocking" not in launch.argv
    assert launch.argv[launch.argv.index("--port") + 1] == "3111"
    assert launch.argv[launch.argv.index("--host") + 1] == "127.0.0.1"
    assert launch.cwd == REPO_ROOT
    assert launch.env["TIERFLOW_TIERS"] == str(tiers.resolve())
    assert launch.env["TIERFLOW_HOME"] == str((tmp_path / "data").resolve())
    assert launch.env["LANGGRAPH_CLI_NO_ANALYTICS"] == "1"
    assert "PYTHONPATH" not in launch.env  # the project is the working dir: importable as is


def test_studio_launch_elsewhere_keeps_the_project_importable(tmp_path: Path) -> None:
    launch = studio_launch(LANGGRAPH_JSON, workdir=tmp_path, reload=True, browser=True, env={"PYTHONPATH": "/opt/x"})
    assert launch.cwd == tmp_path.resolve()
    assert launch.env["PYTHONPATH"].split(os.pathsep) == [str(REPO_ROOT), "/opt/x"]
    assert "--no-reload" not in launch.argv and "--no-browser" not in launch.argv


def test_studio_url_points_studio_at_the_local_server() -> None:
    assert studio_url("127.0.0.1", 2024) == "https://smith.langchain.com/studio/?baseUrl=http://127.0.0.1:2024"
    assert studio_url("0.0.0.0", 8123, "https://studio.example/") == "https://studio.example/studio/?baseUrl=http://127.0.0.1:8123"


def test_a_missing_or_empty_langgraph_json_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no langgraph\.json found"):
        find_langgraph_config(tmp_path / "langgraph.json")
    empty = tmp_path / "empty.json"
    empty.write_text('{"dependencies": ["."], "graphs": {}}', encoding="utf-8")
    with pytest.raises(ConfigError, match="declares no graphs"):
        read_langgraph_config(empty)
    broken = tmp_path / "broken.json"
    broken.write_text("{graphs", encoding="utf-8")
    with pytest.raises(ConfigError, match="JSON"):
        read_langgraph_config(broken)


def test_tierflow_studio_dry_run_prints_the_url_the_tiers_and_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert tierflow(["studio", "--dry-run", "--port", "3112"]) == 0
    out = capsys.readouterr().out
    assert "studio/?baseUrl=http://127.0.0.1:3112" in out
    assert "langgraph_cli dev" in out and "--no-reload" in out
    for name in GRAPH_MODULES:
        assert name in out
    assert "slm" in out and "frontier" in out
