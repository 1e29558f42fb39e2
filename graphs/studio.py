"""`tierflow studio`: serve every graph of langgraph.json to LangGraph Studio, offline.

It prints the graphs served, the Studio URL and which tiers are live (the doctor's checks
without a model call), then replaces itself with `langgraph dev` (package
`langgraph-cli[inmem]`), so Ctrl+C and signals reach the server directly.

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

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tierflow.graphs.catalog import graph_catalog, langgraph_graphs, resolve_graph
from tierflow.model_tiers import ConfigError, MissingDependency, load_tier_config
from tierflow.model_tiers.doctor import TierCheck, diagnose
from tierflow.model_tiers.home import home_dir

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_STUDIO_ORIGIN",
    "PROJECT_ROOT",
    "StudioLaunch",
    "find_langgraph_config",
    "read_langgraph_config",
    "studio_url",
    "studio_launch",
    "register",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2024  # langgraph dev's own default
DEFAULT_STUDIO_ORIGIN = "https://smith.langchain.com"
CONFIG_NAME = "langgraph.json"
# graphs/studio.py -> graphs/ -> the project root (where langgraph.json and tiers.toml live)
PROJECT_ROOT = Path(__file__).resolve().parent.parent

console = Console()


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
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read it as JSON: {err}", source=str(path)) from None
    graphs = data.get("graphs") if isinstance(data, dict) else None
    if not isinstance(graphs, dict) or not graphs:
        raise ConfigError('it declares no graphs; add e.g. "graphs": {"ticket_triage": "tierflow.graphs.ticket_triage:graph"}', source=str(path))
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


def _print_tiers(checks: list[TierCheck]) -> None:
    table = Table(title="Tiers (no model call; run `tierflow doctor` to probe them)")
    for col in ("tier", "provider", "model", "live", "detail", "how to fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        table.add_row(c.tier, c.provider, c.model, "[green]yes[/green]" if c.ok else "[red]no[/red]", c.detail, c.fix)
    console.print(table)


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


def _studio(args: argparse.Namespace) -> int:
    if find_spec("langgraph_cli") is None or find_spec("langgraph_api") is None:
        raise MissingDependency("langgraph-cli[inmem]", extra="studio", purpose="tierflow studio")
    config_path = find_langgraph_config(args.config)
    if args.graphs:
        config_path = config_with_graphs(config_path, list(args.graphs), home_dir() / "studio")
    graphs = read_langgraph_config(config_path)["graphs"]
    tier_config = load_tier_config(args.tiers)
    checks = diagnose(tier_config, probe=False)
    launch = studio_launch(
        config_path,
        host=args.host,
        port=args.port,
        reload=args.reload,
        browser=args.browser,
        studio_origin=args.studio_url,
        workdir=Path(args.workdir) if args.workdir else None,
        tiers_file=args.tiers,
        data_home=home_dir(),
    )
    console.print(f"[bold]graphs[/bold] ({config_path}): {', '.join(sorted(graphs))}")
    missing = sorted(set(graph_catalog()) - set(graphs))
    if missing:
        console.print(f"[yellow]not in {CONFIG_NAME}, so not served: {', '.join(missing)}[/yellow]")
    _print_tiers(checks)
    console.print(f"policy: {tier_config.policy}  |  data: {launch.env.get('TIERFLOW_HOME')}")
    console.print(f"[bold]API[/bold]:    http://{args.host}:{args.port}")
    console.print(f"[bold]Studio[/bold]: {studio_url(args.host, args.port, args.studio_url or DEFAULT_STUDIO_ORIGIN)}", soft_wrap=True)
    if args.dry_run:
        console.print(" ".join(launch.argv), highlight=False, soft_wrap=True)
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    os.chdir(launch.cwd)
    os.execve(launch.argv[0], list(launch.argv), dict(launch.env))
    return 0  # not reached: execve replaced this process


def _graphs(args: argparse.Namespace) -> int:
    """List the catalog; write or check langgraph.json's graphs against it."""
    here = Path.cwd() / CONFIG_NAME
    config_path = Path(args.config) if args.config else (here if args.write or here.exists() else find_langgraph_config(None))
    wanted = langgraph_graphs()
    if args.write:
        data = read_langgraph_config(config_path) if config_path.exists() else {"dependencies": ["."]}
        data = {"$schema": "https://langgra.ph/schema.json", **data, "graphs": wanted}
        config_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {len(wanted)} graphs to {config_path}")
        return 0
    current = read_langgraph_config(config_path)["graphs"]
    catalog = graph_catalog()
    table = Table(title=f"the graph catalog (tierflow's, then \\[tool.tierflow.graphs] of ./pyproject.toml) and {config_path}")
    for col in ("name", "reference", CONFIG_NAME):
        table.add_column(col, overflow="fold")
    for name in sorted(set(wanted) | set(current)):
        table.add_row(name, catalog.get(name, ""), _entry_state(current.get(name), wanted.get(name)))
    console.print(table)
    if args.check and current != wanted:
        console.print(f"[red]{config_path} does not match the catalog[/red]: run `tierflow graphs --write`", highlight=False)
        return 1
    return 0


def _entry_state(current: str | None, wanted: str | None) -> str:
    if current == wanted:
        return "[green]ok[/green]"
    if wanted is None:
        return "[red]not in the catalog[/red]"
    return f"[red]{current or 'missing'}[/red] (want {wanted})"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    g = subparsers.add_parser("graphs", help="the graph catalog; write or check langgraph.json against it")
    g.add_argument("--config", help=f"{CONFIG_NAME} to check or write (default: ./{CONFIG_NAME}, else the project's)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write the catalog's graphs into {CONFIG_NAME}")
    mode.add_argument("--check", action="store_true", help=f"exit 1 when {CONFIG_NAME} does not match the catalog")
    g.set_defaults(handler=_graphs)
    p = subparsers.add_parser("studio", help="serve the graphs to LangGraph Studio (langgraph dev)")
    p.add_argument("graphs", nargs="*", metavar="GRAPH", help="also serve these graphs (references: my_pkg.agent:WORKFLOW, path/to/agent.py:WORKFLOW)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST}, loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--config", help=f"{CONFIG_NAME} to serve (default: ./{CONFIG_NAME}, else the project's)")
    p.add_argument("--workdir", help="server working directory, where it keeps threads (default: the project folder)")
    p.add_argument("--reload", action="store_true", help="restart the server when code changes (cuts off running runs)")
    p.add_argument("--browser", action="store_true", help="open Studio in a browser once the server is up")
    p.add_argument("--studio-url", help=f"Studio origin (default {DEFAULT_STUDIO_ORIGIN})")
    p.add_argument("--dry-run", action="store_true", help="print what would run, start nothing")
    p.set_defaults(handler=_studio)
