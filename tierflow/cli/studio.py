"""`tierflow studio` and `tierflow graphs`: serve the graphs to LangGraph Studio, offline, and
keep langgraph.json in step with the graph catalog.

`tierflow studio` prints the graphs served, the Studio URL and which tiers are live (the
doctor's checks without a model call), then runs `langgraph dev` (package
`langgraph-cli[inmem]`, flags explained in `tierflow.graphs.studio`) as its child: the
server's exit status is the command's, SIGTERM and SIGHUP are passed on to it, and Ctrl+C
reaches it once. A server that cannot be started is a one-line error like any other.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.table import Table

from tierflow.graphs.catalog import graph_catalog, langgraph_graphs
from tierflow.graphs.studio import (
    CONFIG_NAME,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_STUDIO_ORIGIN,
    StudioLaunch,
    config_with_graphs,
    find_langgraph_config,
    read_langgraph_config,
    studio_launch,
    studio_url,
)
from tierflow.model_tiers import ConfigError, MissingDependency, load_tier_config
from tierflow.model_tiers.doctor import TierCheck, diagnose
from tierflow.model_tiers.home import home_dir

__all__ = ["register", "serve"]

console = Console()
# Passed on to the server as they come; SIGINT is handled apart (see _forwarding).
_FORWARDED = (signal.SIGTERM, signal.SIGHUP)


def _print_tiers(checks: list[TierCheck]) -> None:
    table = Table(title="Tiers (no model call; run `tierflow doctor` to probe them)")
    for col in ("tier", "provider", "model", "live", "detail", "how to fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        table.add_row(c.tier, c.provider, c.model, "[green]yes[/green]" if c.ok else "[red]no[/red]", c.detail, c.fix)
    console.print(table)


def _die_with_parent() -> None:
    """Runs in the child before exec: Linux sends it SIGTERM if this process dies first (a
    SIGKILL cannot be passed on), so no server outlives the command."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return  # not glibc: the signals this process does receive are still passed on
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _terminal_delivers_sigint() -> bool:
    """Whether a Ctrl+C here reaches the server too: it shares this process group, so it
    does when that group is the terminal's foreground one."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False  # no terminal (a pipe, a service): an interrupt came to us alone


@contextmanager
def _forwarding(child: subprocess.Popen[bytes]) -> Iterator[None]:
    """Pass the signals this process gets on to `child` while it runs."""
    sigint_reaches_child = _terminal_delivers_sigint()

    def forward(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGINT and sigint_reaches_child:
            return  # the terminal sent it to the server as well; a second one would force it down
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (*_FORWARDED, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(launch: StudioLaunch) -> int:
    """Run the server of `launch` until it exits; its exit status (128 + N for signal N)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        child = subprocess.Popen(
            list(launch.argv), cwd=launch.cwd, env=dict(launch.env),
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    except OSError as err:
        command = " ".join(launch.argv[:4])
        raise ConfigError(f"cannot start the LangGraph server ({command} ...) in {launch.cwd}: {err.strerror or err}") from None
    with _forwarding(child):
        code = child.wait()
    status = 128 - code if code < 0 else code
    if status not in (0, 128 + signal.SIGINT, 128 + signal.SIGTERM):
        Console(stderr=True).print(
            f"[red]error:[/red] the LangGraph server (langgraph dev) exited with status {status}; its output is above", highlight=False
        )
    return status


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
    if not launch.cwd.is_dir():
        raise ConfigError(f"--workdir {launch.cwd} is not a folder")
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
    return serve(launch)


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


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    g = subparsers.add_parser("graphs", help="the graph catalog; write or check langgraph.json against it")
    g.add_argument("--config", help=f"{CONFIG_NAME} to check or write (default: ./{CONFIG_NAME}, else the project's)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"write the catalog's graphs into {CONFIG_NAME}")
    mode.add_argument("--check", action="store_true", help=f"exit 1 when {CONFIG_NAME} does not match the catalog")
    g.set_defaults(handler=_graphs)
    p = subparsers.add_parser("studio", help="serve the graphs to LangGraph Studio (langgraph dev)")
    p.add_argument(
        "graphs", nargs="*", metavar="GRAPH", help="also serve these graphs (references: my_pkg.agent:WORKFLOW, path/to/agent.py:WORKFLOW)"
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST}, loopback only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--config", help=f"{CONFIG_NAME} to serve (default: ./{CONFIG_NAME}, else the project's)")
    p.add_argument("--workdir", help="server working directory, where it keeps threads (default: the project folder)")
    p.add_argument("--reload", action="store_true", help="restart the server when code changes (cuts off running runs)")
    p.add_argument("--browser", action="store_true", help="open Studio in a browser once the server is up")
    p.add_argument("--studio-url", help=f"Studio origin (default {DEFAULT_STUDIO_ORIGIN})")
    p.add_argument("--dry-run", action="store_true", help="print what would run, start nothing")
    p.set_defaults(handler=_studio)
