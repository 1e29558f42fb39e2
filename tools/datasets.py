"""Where the public datasets live (re-exported from the one resolver, model_tiers.home).

The datasets are read-only and shared between checkouts, so they are never copied into
the repository: they are found through ``$TIERFLOW_DATASETS`` or, by default, in
``../shared/datasets`` seen from the working folder.
"""

from __future__ import annotations

from tierflow.model_tiers.home import DATASETS_ENV_VAR, dataset_file, datasets_dir

__all__ = ["DATASETS_ENV_VAR", "datasets_dir", "dataset_file"]
