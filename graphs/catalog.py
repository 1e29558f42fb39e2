"""Which graphs exist, declared once, and how a graph is found by name or by reference.

A graph is a `Workflow` object. It is named either by its catalog name (`ticket_triage`)
or by a reference to the object: `package.module:WORKFLOW` or `path/to/file.py:WORKFLOW`.
`tierflow run`, `eval`, `studio` and `graphs` all take either.

The catalog is the graphs tierflow ships plus the project's own, declared in the
`[tool.tierflow.graphs]` table of `./pyproject.toml` (name = "reference"). A project name
may not reuse a shipped one. `langgraph.json` is generated from the catalog
(`tierflow graphs --write`) and checked against it (`tierflow graphs --check`), never kept
by hand.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import tomllib
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from tierflow.graphs.builder import Workflow, build_graph
from tierflow.model_tiers import ConfigError
from tierflow.model_tiers.home import write_crash_log

__all__ = [
    "SHIPPED_GRAPHS",
    "GRAPH_MODULES",
    "GraphEntry",
    "project_graphs",
    "graph_catalog",
    "graph_names",
    "resolve_graph",
    "workflow_entry",
    "load_graph_module",
    "langgraph_graphs",
]

# The graphs that ship with tierflow: name -> reference.
SHIPPED_GRAPHS: dict[str, str] = {
    "ticket_triage": "tierflow.graphs.ticket_triage:WORKFLOW",
    "slot_extraction": "tierflow.graphs.slot_extraction:WORKFLOW",
    "math_qa": "tierflow.graphs.math_qa:WORKFLOW",
    "order_agent": "tierflow.graphs.order_agent:WORKFLOW",
    "function_calling": "tierflow.graphs.function_calling:WORKFLOW",
    "recorded": "tierflow.graphs.recorded:WORKFLOW",
}
# name -> module, for the shipped graphs (each module also exports `build` and `graph`).
GRAPH_MODULES: dict[str, str] = {name: ref.split(":", 1)[0] for name, ref in SHIPPED_GRAPHS.items()}


@dataclass(frozen=True)
class GraphEntry:
    """A resolved graph: its name, the reference it came from, the workflow and its module
    (None for a Workflow object that no module holds, e.g. one built in a function)."""

    name: str
    ref: str
    workflow: Workflow
    module: ModuleType | None
    attribute: str

    def build(self, **kwargs: Any) -> Any:
        """Compile the graph (the module's own `build` where it has one, for its options)."""
        own = getattr(self.module, "build", None)
        if callable(own) and getattr(self.module, "WORKFLOW", None) is self.workflow:
            return own(**kwargs)
        return build_graph(self.workflow, **kwargs)

    @property
    def source(self) -> str:
        """The module path or file of the reference (what langgraph.json names)."""
        return self.ref.rsplit(":", 1)[0]

    @property
    def langgraph_target(self) -> str:
        """What langgraph.json points at: the module's compiled `graph` when it exports one
        built from this workflow, else the workflow itself (a graph factory for the server)."""
        compiled = getattr(self.module, "graph", None)
        if compiled is not None and getattr(compiled, "name", None) == self.workflow.name and self.attribute == "WORKFLOW":
            return f"{self.source}:graph"
        return self.ref


def project_graphs(project: Path | None = None) -> dict[str, str]:
    """`[tool.tierflow.graphs]` of `project/pyproject.toml` (default: the working directory)."""
    path = (project or Path.cwd()) / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"cannot read it: {err}", source=str(path)) from None
    table = data.get("tool", {}).get("tierflow", {}).get("graphs", {})
    if not isinstance(table, Mapping) or not all(isinstance(v, str) for v in table.values()):
        raise ConfigError('[tool.tierflow.graphs] must map names to references such as "my_pkg.agent:WORKFLOW"', source=str(path))
    clash = sorted(set(table) & set(SHIPPED_GRAPHS))
    if clash and any(table[n] != SHIPPED_GRAPHS[n] for n in clash):
        raise ConfigError(f"[tool.tierflow.graphs] reuses shipped graph names {clash}; pick other names", source=str(path))
    return {str(k): str(v) for k, v in table.items()}


def graph_catalog(project: Path | None = None) -> dict[str, str]:
    """Every graph by name: the shipped ones, then the project's."""
    return {**SHIPPED_GRAPHS, **project_graphs(project)}


def graph_names(project: Path | None = None) -> list[str]:
    return sorted(graph_catalog(project))


def _is_reference(text: str) -> bool:
    return ":" in text


def _import_file(path: Path) -> ModuleType:
    """Import a graph file by path, under a name unique to the path; its folder goes on
    sys.path so it can import its neighbours."""
    resolved = path.resolve()
    name = f"tierflow_graph_{resolved.stem}_{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(resolved.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[name]
        raise _import_failed(str(path), err, str(resolved)) from None
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _import_failed(source: str, err: BaseException, origin: str | None) -> ConfigError:
    """A user's graph module that raised while importing: one line naming the file and the
    line, the traceback in a log file (it is their code, not a tierflow bug)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith("<frozen")]
    # The deepest line of their file, else the deepest line at all (a library they called).
    theirs = [f for f in frames if origin is not None and Path(f.filename).resolve() == Path(origin).resolve()] or frames[-1:]
    where = f" (line {theirs[-1].lineno} of {theirs[-1].filename})" if theirs else ""
    log = write_crash_log("".join(traceback.format_exception(err)), prefix="graph-import")
    logged = f"; the traceback is in {log}" if log else ""
    return ConfigError(f"importing {source} failed: {type(err).__name__}: {err}{where}{logged}")


def _load(ref: str) -> tuple[ModuleType, str]:
    source, _, attribute = ref.rpartition(":")
    if not source or not attribute.isidentifier():
        raise ConfigError(f"'{ref}' is not a graph reference; write package.module:WORKFLOW or path/to/file.py:WORKFLOW")
    if source.endswith(".py") or "/" in source or "\\" in source:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"graph reference '{ref}': no file {path}")
        return _import_file(path), attribute
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # a module of the project being run, as `python -m` would
    try:
        return importlib.import_module(source), attribute
    except ModuleNotFoundError as err:
        if err.name and source.startswith(err.name):
            raise ConfigError(f"graph reference '{ref}': no module '{err.name}' (is the project on PYTHONPATH?)") from None
        if source.startswith("tierflow."):
            raise  # a module of ours that fails to import is a bug of ours
        raise _import_failed(f"module '{source}'", err, _origin(source)) from None
    except Exception as err:
        if source.startswith("tierflow."):
            raise
        raise _import_failed(f"module '{source}'", err, _origin(source)) from None


def _origin(module: str) -> str | None:
    """The file a module is imported from (None when it cannot be found without importing)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None else None


def resolve_graph(name_or_ref: str, project: Path | None = None) -> GraphEntry:
    """A graph by catalog name, or by reference; a clear error for anything else."""
    catalog = graph_catalog(project)
    if _is_reference(name_or_ref):
        ref, name = name_or_ref, None
    elif name_or_ref in catalog:
        ref, name = catalog[name_or_ref], name_or_ref
    else:
        raise ConfigError(
            f"unknown graph '{name_or_ref}'; available graphs: {', '.join(sorted(catalog))} "
            "(or give a reference: package.module:WORKFLOW or path/to/file.py:WORKFLOW)"
        )
    module, attribute = _load(ref)
    workflow = getattr(module, attribute, None)
    if workflow is None:
        raise ConfigError(f"graph reference '{ref}': {module.__name__} has no attribute '{attribute}'")
    if not isinstance(workflow, Workflow):
        raise ConfigError(
            f"graph reference '{ref}' is a {type(workflow).__name__}, not a tierflow Workflow; point at the Workflow "
            "(a hand-written StateGraph uses tiered steps as nodes instead: graphs.tiered_step)"
        )
    return GraphEntry(name=name or workflow.name, ref=ref, workflow=workflow, module=module, attribute=attribute)


def workflow_entry(workflow: Workflow) -> GraphEntry:
    """The entry of a Workflow object: by its reference when a loaded module holds it (a
    shipped graph, a project module, a graph file), so runs and evals name it as the CLI
    does; otherwise (a workflow built in a function or a notebook) by its name alone."""
    main = sys.modules.get("__main__")
    for module_name, module in list(sys.modules.items()):
        if module is main:
            continue  # a script's own namespace (also under an alias) has no importable reference
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        attribute = next((k for k, v in list(namespace.items()) if v is workflow and k.isidentifier()), None)
        if attribute is None:
            continue
        if module_name.startswith("tierflow_graph_") and getattr(module, "__file__", None):
            ref = f"{module.__file__}:{attribute}"  # a graph file imported by path (see _import_file)
        else:
            ref = f"{module_name}:{attribute}"
        shipped = next((n for n, r in SHIPPED_GRAPHS.items() if r == ref), None)
        return GraphEntry(name=shipped or workflow.name, ref=ref, workflow=workflow, module=module, attribute=attribute)
    return GraphEntry(name=workflow.name, ref=workflow.name, workflow=workflow, module=None, attribute="")


def load_graph_module(name: str) -> ModuleType:
    """The module of a graph (by name or reference), exposing its `WORKFLOW`."""
    module = resolve_graph(name).module
    assert module is not None  # resolve_graph always imports one
    return module


def langgraph_graphs(project: Path | None = None) -> dict[str, str]:
    """The `graphs` table langgraph.json must hold for the catalog (name -> target)."""
    return {name: resolve_graph(name, project).langgraph_target for name in graph_names(project)}
