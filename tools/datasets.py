"""Where the public datasets live.

The datasets are read-only and shared between checkouts, so they are never copied into
the repository: they are found through ``$TIERFLOW_DATASETS`` or, by default, in the
``shared/datasets`` folder next to the repository root.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from model_tiers.errors import ConfigError

__all__ = ["DATASETS_ENV_VAR", "datasets_dir", "dataset_file"]

DATASETS_ENV_VAR = "TIERFLOW_DATASETS"

# tools/datasets.py -> tools/ -> <repo root>
_REPO_ROOT = Path(__file__).resolve().parent.parent


def datasets_dir(env: Mapping[str, str] | None = None) -> Path:
    """The shared datasets folder: ``$TIERFLOW_DATASETS``, else ``<repo root>/../shared/datasets``.

    Raises ``ConfigError`` naming the variable when the folder does not exist.
    """
    environ = os.environ if env is None else env
    configured = environ.get(DATASETS_ENV_VAR, "").strip()
    if configured:
        folder = Path(configured).expanduser()
        if not folder.is_dir():
            raise ConfigError(
                f"the datasets folder '{folder}' does not exist; point {DATASETS_ENV_VAR} "
                "at the folder that holds the public datasets (e.g. tau2_retail/)",
                source=f"env:{DATASETS_ENV_VAR}",
            )
        return folder
    folder = _REPO_ROOT.parent / "shared" / "datasets"
    if not folder.is_dir():
        raise ConfigError(
            f"no datasets folder at the default location '{folder}'; set the environment "
            f"variable {DATASETS_ENV_VAR} to the folder that holds the public datasets"
        )
    return folder


def dataset_file(*parts: str, env: Mapping[str, str] | None = None) -> Path:
    """A file inside the datasets folder, e.g. ``dataset_file("tau2_retail", "db.json")``.

    Raises ``ConfigError`` when the file is missing, naming the folder that was searched.
    """
    folder = datasets_dir(env)
    path = folder.joinpath(*parts)
    if not path.is_file():
        raise ConfigError(
            f"the dataset file '{'/'.join(parts)}' is missing from '{folder}'; check "
            f"{DATASETS_ENV_VAR} points at the right datasets folder"
        )
    return path
