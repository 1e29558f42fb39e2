"""Where the public datasets live: one rule, kept in `tools.datasets` ($TIERFLOW_DATASETS,
else `<repo>/../shared/datasets`); this module adds the per-dataset folder lookup."""

from __future__ import annotations

from pathlib import Path

from tierflow.model_tiers.errors import ConfigError
from tierflow.tools.datasets import DATASETS_ENV_VAR as DATASETS_ENV
from tierflow.tools.datasets import datasets_dir

__all__ = ["DATASETS_ENV", "datasets_root", "resolve_dataset_path"]


def datasets_root() -> Path:
    """The folder that holds one sub-folder per dataset (banking77/, bfcl/, ...)."""
    return datasets_dir().resolve()


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
