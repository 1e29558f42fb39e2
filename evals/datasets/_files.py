"""File reading shared by the loaders, and the error they raise: every failure names the file and what to do."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from tierflow.model_tiers.errors import ConfigError, TierflowError

__all__ = ["DatasetFormatError", "existing_file", "read_csv_rows", "read_json", "read_jsonl", "file_stem"]


class DatasetFormatError(TierflowError, ValueError):
    """A dataset file does not have the shape its loader expects.

    The message names the file and, where known, the row, so the fix is to pass the right
    file (or format) rather than to debug the loader.
    """

    def __init__(self, path: str | Path, message: str, *, row: int | str | None = None) -> None:
        self.path = str(path)
        self.row = row
        where = f"{path} (row {row})" if row is not None else str(path)
        super().__init__(f"{where}: {message}")


def existing_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path, or a ConfigError saying which file was expected there."""
    candidate = Path(path).expanduser()
    if not candidate.is_file():
        raise ConfigError(f"{what} not found at {candidate}; pass the path of an existing file")
    return candidate


def file_stem(path: Path) -> str:
    """The part of a file name that identifies its split in case ids (``train_0.json`` -> ``train_0``)."""
    return path.name.split(".", 1)[0]


def read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise DatasetFormatError(path, f"not valid JSON ({err}); is this the right file?") from err


def read_jsonl(path: Path) -> list[tuple[int, Any]]:
    """(1-based line number, parsed object) for every non-blank line."""
    records: list[tuple[int, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append((number, json.loads(line)))
            except json.JSONDecodeError as err:
                raise DatasetFormatError(
                    path, f"not valid JSON Lines ({err}); expected one JSON object per line", row=number
                ) from err
    return records


def read_csv_rows(path: Path, required_columns: list[str]) -> list[dict[str, str]]:
    """Rows of a headed CSV (fields may span lines), after checking the header."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [column for column in required_columns if column not in header]
        if missing:
            raise DatasetFormatError(
                path, f"CSV header {header} lacks the column(s) {missing}; is this the right file?"
            )
        return list(reader)
