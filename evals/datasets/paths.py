"""Where the public datasets live on this machine.

The datasets are read-only and never copied into the repository, so their folder is
configuration: ``$TIERFLOW_DATASETS`` when set, else ``<repo>/../shared/datasets`` (the
layout of a checkout next to the shared data).
"""

from __future__ import annotations

import os
from pathlib import Path

from model_tiers.errors import ConfigError

__all__ = ["DATASETS_ENV", "datasets_root", "resolve_dataset_path"]

DATASETS_ENV = "TIERFLOW_DATASETS"

# evals/datasets/paths.py -> parents[2] is the repository root.
_REPO_ROOT = Path(__file__).resolve().parents[2]


def datasets_root() -> Path:
    """The folder that holds one sub-folder per dataset (banking77/, bfcl/, ...)."""
    configured = os.environ.get(DATASETS_ENV, "").strip()
    if configured:
        root = Path(configured).expanduser()
        if not root.is_dir():
            raise ConfigError(
                f"datasets folder {root} does not exist; point {DATASETS_ENV} at the folder "
                "that holds banking77/, clinc150/, bfcl/, ...",
                source=f"env:{DATASETS_ENV}",
            )
        return root
    root = (_REPO_ROOT.parent / "shared" / "datasets").resolve()
    if not root.is_dir():
        raise ConfigError(
            f"no datasets folder found at the default {root}; set the environment variable "
            f"{DATASETS_ENV} to the folder that holds banking77/, clinc150/, bfcl/, ..."
        )
    return root


def resolve_dataset_path(name: str) -> Path:
    """The folder of dataset ``name`` (e.g. ``"banking77"``) under ``datasets_root()``."""
    if not name or Path(name).name != name:
        raise ConfigError(f"dataset name must be a plain folder name, got {name!r}")
    root = datasets_root()
    folder = root / name
    if not folder.is_dir():
        available = sorted(child.name for child in root.iterdir() if child.is_dir())
        raise ConfigError(
            f"dataset {name!r} not found under {root} (available: {', '.join(available) or 'none'}); "
            f"set {DATASETS_ENV} to the folder that holds it"
        )
    return folder
