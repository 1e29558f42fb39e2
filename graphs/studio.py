"""What `tierflow studio` serves and how it starts `langgraph dev` (the command itself is
`tierflow.cli.studio`): find and read langgraph.json, add a user's graphs to a copy of it,
and build the server's command line and environment.

Flags given to `langgraph dev`, and why:
* `--no-browser` unless `--browser`: the URL is printed, and machines without a desktop
  would otherwise try (and fail) to open one.
* `--no-reload` unless `--reload`: a reload restarts the server and cuts off the runs in
  flight, including those paused for a human.
* no `--allow-blocking`: tierflow's nodes are sync functions, which LangGraph runs in a
  worker thread, outside the event loop that the server's blocking-call detector
  (blockbuster) guards. Keeping the detector on catches real mistakes in async code.

The server runs in the project folder (where langgraph.json is) and keeps its threads in
`.langgraph_api/` there; `--workdir DIR` moves them (and the working directory) elsewhere,
with the project put on PYTHONPATH so the graphs still import.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierflow.graphs.catalog import resolve_graph
from tierflow.model_tiers import ConfigError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_STUDIO_ORIGIN",
    "CONFIG_NAME",
    "PROJECT_ROOT",
    "StudioLaunch",
    "find_langgraph_config",
    "read_langgraph_config",
    "studio_url",
    "studio_launch",
    "config_with_graphs",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2024  # langgraph dev's own default
DEFAULT_STUDIO_ORIGIN = "https://smith.langchain.com"
CONFIG_NAME = "langgraph.json"
# graphs/studio.py -> graphs/ -> the project root (where langgraph.json and tiers.toml live)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class StudioLaunch:
    """How to start the server: the command, its working directory and its environment."""

    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]


def find_langgraph_config(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config to serve: the given path, else ./langgraph.json, else the project's."""
    candidates = [Path(explicit)] if explicit is not None else [Path.cwd() / CONFIG_NAME, PROJECT_ROOT / CONFIG_NAME]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    tried = ", ".join(str(p) for p in candidates)
    raise ConfigError(f"no {CONFIG_NAME} found (looked at {tried}); pass --config PATH")


def read_langgraph_config(path: Path) -> dict[str, Any]:
    """Parse langgraph.json and check the part tierflow relies on: a non-empty `graphs` map."""
    try:
        data: object = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read it as JSON: {err}", source=str(path)) from None
    graphs = data.get("graphs") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(graphs, dict) or not graphs:
        example = '"graphs": {"ticket_triage": "tierflow.graphs.ticket_triage:graph"}'
        raise ConfigError(f"it declares no graphs; add e.g. {example}", source=str(path))
    return data


def studio_url(host: str, port: int, origin: str = DEFAULT_STUDIO_ORIGIN) -> str:
    """The Studio page that talks to the local server (the browser connects to it directly)."""
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"{origin.rstrip('/')}/studio/?baseUrl=http://{local}:{port}"


def studio_launch(
    config_path: Path,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    reload: bool = False,
    browser: bool = False,
    studio_origin: str | None = None,
    workdir: Path | None = None,
    tiers_file: str | os.PathLike[str] | None = None,
    data_home: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> StudioLaunch:
    """The `langgraph dev` command for `config_path`, with tierflow's settings in its env."""
    project = config_path.parent
    cwd = (workdir or project).resolve()
    child = dict(os.environ if env is None else env)
    # Offline by default: no CLI analytics, no version check against PyPI.
    child.setdefault("LANGGRAPH_CLI_NO_ANALYTICS", "1")
    child.setdefault("LANGGRAPH_NO_VERSION_CHECK", "true")
    if tiers_file is not None:
        child["TIERFLOW_TIERS"] = str(Path(tiers_file).resolve())
    if data_home is not None:
        # Absolute, so the server and `tierflow run` share the same business data
        # (helpdesk, knowledge base) whatever the server's working directory.
        child["TIERFLOW_HOME"] = str(data_home.resolve())
    if cwd != project.resolve():
        paths = [str(project.resolve()), *filter(None, child.get("PYTHONPATH", "").split(os.pathsep))]
        child["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    argv = [
        sys.executable, "-m", "langgraph_cli", "dev",
        "--config", str(config_path),
        "--host", host,
        "--port", str(port),
    ]
    if not browser:
        argv.append("--no-browser")
    if not reload:
        argv.append("--no-reload")
    if studio_origin:
        argv += ["--studio-url", studio_origin]
    return StudioLaunch(argv=tuple(argv), cwd=cwd, env=child)


def config_with_graphs(config_path: Path, refs: list[str], folder: Path) -> Path:
    """A copy of langgraph.json that also serves the graphs `refs` name (a user's files or
    modules), written to `folder`; the original is not touched."""
    data = read_langgraph_config(config_path)
    project = config_path.parent.resolve()
    graphs = dict(data["graphs"])
    for ref in refs:
        entry = resolve_graph(ref)
        target = entry.langgraph_target
        source, _, attribute = target.rpartition(":")
        if source.endswith(".py") or "/" in source:
            target = f"{Path(source).resolve()}:{attribute}"
        graphs[entry.name] = target
    deps = [str((project / d).resolve()) if not Path(d).is_absolute() else d for d in data.get("dependencies", ["."])]
    generated = {**data, "graphs": graphs, "dependencies": [*deps, str(Path.cwd().resolve())]}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_NAME
    path.write_text(json.dumps(generated, indent=2) + "\n", encoding="utf-8")
    return path
