"""Typed, file-backed eval datasets: a ``Case`` is one graded example, a ``Dataset`` is a
named list of cases plus where they came from.

Modelled on pydantic-evals' ``Dataset``/``Case``, reduced to what the harness needs:
the case types are generic so each loader's inputs and expectations stay typed
(``Dataset[IntentInputs, IntentExpected]``), and datasets round-trip through JSONL so a
run can pin the exact cases it used.

Sampling is deterministic by construction: a case's rank is the sha256 of
``"{seed}:{case.id}"``, so the same ``limit`` and ``seed`` pick the same cases on every
machine, in every process (Python's ``hash`` is salted per process, so it is not used),
and ``sample(10)`` is a subset of ``sample(20)``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ._files import DatasetFormatError, read_jsonl

__all__ = [
    "Case",
    "Dataset",
    "DatasetSource",
    "DatasetFormatError",
    "FrozenModel",
    "sample_rank",
]

InputsT = TypeVar("InputsT")
ExpectedT = TypeVar("ExpectedT")

# The first line of a dataset JSONL file carries the dataset header under this key; every
# other line is one case. A key no case has keeps the two apart without a schema change.
_HEADER_KEY = "__dataset__"


class FrozenModel(BaseModel):
    """A pydantic model whose instances cannot change: cases, their inputs and expectations
    are values, shared by every policy's run of a case."""

    model_config = ConfigDict(frozen=True)


class DatasetSource(FrozenModel):
    """Where a dataset was read from: the file and the format its loader parsed."""

    path: str
    format: str


class Case(FrozenModel, Generic[InputsT, ExpectedT]):
    """One example: what the graph receives (``inputs``) and what a grader accepts
    (``expected``). ``id`` is derived from the source row, so it is stable across runs."""

    id: str
    inputs: InputsT
    expected: ExpectedT
    metadata: dict[str, Any] = Field(default_factory=dict)


def sample_rank(case_id: str, seed: int) -> str:
    """The sort key that orders cases for sampling (hex sha256 of ``"{seed}:{case_id}"``)."""
    return hashlib.sha256(f"{seed}:{case_id}".encode()).hexdigest()


class Dataset(BaseModel, Generic[InputsT, ExpectedT]):
    """A named, ordered collection of cases with unique ids."""

    name: str
    cases: list[Case[InputsT, ExpectedT]]
    source: DatasetSource
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ids_are_unique(self) -> Self:
        counts = Counter(case.id for case in self.cases)
        duplicates = sorted(case_id for case_id, n in counts.items() if n > 1)
        if duplicates:
            raise ValueError(
                f"dataset {self.name!r} has duplicate case ids {duplicates[:5]}: ids must be "
                "unique so results can be joined back to cases"
            )
        return self

    def __len__(self) -> int:
        return len(self.cases)

    def case(self, case_id: str) -> Case[InputsT, ExpectedT]:
        """The case with this id (KeyError if absent)."""
        for case in self.cases:
            if case.id == case_id:
                return case
        raise KeyError(f"no case {case_id!r} in dataset {self.name!r}")

    def sample(
        self,
        limit: int | None,
        seed: int = 0,
        *,
        stratify: Callable[[Case[InputsT, ExpectedT]], Hashable] | None = None,
    ) -> Self:
        """A deterministic subset of at most ``limit`` cases, kept in source order.

        Without ``stratify`` the cases with the lowest ``sample_rank`` are taken. With it,
        each stratum (e.g. the gold label) contributes in proportion to its size: a case's
        key is its rank inside its stratum divided by the stratum size, so the first picks
        walk across all strata before any stratum gives a second case. ``limit=None`` or a
        limit at least the dataset size returns every case.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"sample limit must be >= 0 or None, got {limit}")
        if limit is None or limit >= len(self.cases):
            return self.model_copy(update={"cases": list(self.cases)})

        ranks = {case.id: sample_rank(case.id, seed) for case in self.cases}
        if stratify is None:
            chosen = sorted(self.cases, key=lambda case: ranks[case.id])[:limit]
        else:
            strata: dict[Hashable, list[Case[InputsT, ExpectedT]]] = defaultdict(list)
            for case in self.cases:
                strata[stratify(case)].append(case)
            keyed: list[tuple[float, str, Case[InputsT, ExpectedT]]] = []
            for members in strata.values():
                members.sort(key=lambda case: ranks[case.id])
                size = len(members)
                keyed.extend((index / size, ranks[case.id], case) for index, case in enumerate(members))
            keyed.sort(key=lambda item: (item[0], item[1]))
            chosen = [case for _, _, case in keyed[:limit]]
        chosen_ids = {case.id for case in chosen}
        return self.model_copy(
            update={"cases": [case for case in self.cases if case.id in chosen_ids]}
        )

    def to_jsonl(self, path: str | Path) -> Path:
        """Write a header line (name, source, metadata) then one case per line."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        header = {
            _HEADER_KEY: {
                "name": self.name,
                "source": self.source.model_dump(mode="json"),
                "metadata": self.metadata,
            }
        }
        with target.open("w", encoding="utf-8") as out:
            out.write(json.dumps(header, ensure_ascii=False) + "\n")
            for case in self.cases:
                out.write(case.model_dump_json() + "\n")
        return target

    @classmethod
    def from_jsonl(cls, path: str | Path) -> Self:
        """Read a file written by ``to_jsonl``. Call it on the parametrised class
        (``Dataset[IntentInputs, IntentExpected].from_jsonl(p)``) to get typed cases."""
        source = Path(path)
        try:
            lines = read_jsonl(source)
        except OSError as err:
            raise DatasetFormatError(source, f"cannot read dataset JSONL: {err}") from err
        records: list[dict[str, Any]] = []
        for number, record in lines:
            if not isinstance(record, dict):
                raise DatasetFormatError(source, "each line must be a JSON object", row=number)
            records.append(record)
        if not records or _HEADER_KEY not in records[0]:
            raise DatasetFormatError(
                source,
                f"the first line must be the dataset header {{{_HEADER_KEY!r}: ...}}; "
                "write the file with Dataset.to_jsonl",
            )
        header = records[0][_HEADER_KEY]
        try:
            return cls.model_validate({**header, "cases": records[1:]})
        except ValidationError as err:
            raise DatasetFormatError(source, f"cases do not match {cls.__name__}: {err}") from err
