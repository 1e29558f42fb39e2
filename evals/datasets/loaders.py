"""One entry point per public dataset, by name.

Every loader takes the path of a file in its dataset's format (so another split of the
same dataset loads the same way) and ``limit``/``seed`` for a deterministic sample. This
module maps the names the CLI and suites use to a loader and the default file of the
visible split under ``resolve_dataset_path``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from tierflow.model_tiers.errors import ConfigError

from .bfcl import load_bfcl
from .cases import Dataset
from .gsm8k import load_routellm_gsm8k
from .intents import load_banking77, load_clinc150
from .paths import resolve_dataset_path
from .slots import load_restaurant8k
from .tau2 import load_tau2_retail

__all__ = ["DatasetEntry", "DATASETS", "load_dataset", "default_dataset_file"]


@dataclass(frozen=True)
class DatasetEntry:
    """A named dataset: its folder under the datasets root, its default file, its loader."""

    folder: str
    default_file: str
    loader: Callable[..., Dataset[Any, Any]]


def _bfcl(category: str) -> DatasetEntry:
    return DatasetEntry("bfcl", f"BFCL_v4_{category}.json", load_bfcl)


DATASETS: dict[str, DatasetEntry] = {
    "banking77": DatasetEntry("banking77", "train.csv", load_banking77),
    "clinc150": DatasetEntry("clinc150", "train_val.json", load_clinc150),
    "clinc150_val": DatasetEntry("clinc150", "train_val.json", partial(load_clinc150, split="val")),
    "restaurant8k": DatasetEntry("restaurant8k", "train_0.json", load_restaurant8k),
    "bfcl_simple_python": _bfcl("simple_python"),
    "bfcl_multiple": _bfcl("multiple"),
    "bfcl_parallel": _bfcl("parallel"),
    "bfcl_irrelevance": _bfcl("irrelevance"),
    "tau2_retail": DatasetEntry("tau2_retail", "tasks_train.json", load_tau2_retail),
    "routellm_gsm8k": DatasetEntry("routellm_gsm8k", "gsm8k_responses_even.csv", load_routellm_gsm8k),
}


def _entry(name: str) -> DatasetEntry:
    try:
        return DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def default_dataset_file(name: str) -> Path:
    """The visible-split file of dataset ``name`` under the configured datasets root."""
    entry = _entry(name)
    return resolve_dataset_path(entry.folder) / entry.default_file


def load_dataset(
    name: str,
    path: str | Path | None = None,
    *,
    limit: int | None = None,
    seed: int = 0,
    **options: Any,
) -> Dataset[Any, Any]:
    """Load dataset ``name`` from ``path`` (default: its visible split). ``options`` go to
    the dataset's loader (e.g. ``split="val"`` for CLINC150)."""
    entry = _entry(name)
    source = Path(path) if path is not None else default_dataset_file(name)
    return entry.loader(source, limit=limit, seed=seed, **options)
