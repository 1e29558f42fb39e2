"""Internal (the public surface is `tierflow.evaluate`).

Eval datasets: typed cases read from the public dataset files.

``Case``/``Dataset`` (``cases``) are the containers; one module per format turns a file
into typed cases (``intents``, ``slots``, ``bfcl``, ``tau2``, ``gsm8k``); ``loaders``
maps dataset names to loaders and default files under ``$TIERFLOW_DATASETS``.
"""

from __future__ import annotations

from .cases import Case, Dataset, DatasetFormatError, DatasetSource
from .loaders import DATASETS, default_dataset_file, load_dataset
from .paths import DATASETS_ENV, datasets_root, resolve_dataset_path

# The containers and the loader by dataset name; each format's own types and loader are
# imported from its module (`tierflow.evals.datasets.intents`, `.bfcl`, ...).
__all__ = [
    "Case",
    "Dataset",
    "DatasetSource",
    "DatasetFormatError",
    "DATASETS",
    "default_dataset_file",
    "load_dataset",
    "DATASETS_ENV",
    "datasets_root",
    "resolve_dataset_path",
]
