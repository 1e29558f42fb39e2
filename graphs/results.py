"""Step results by step name: what `finalize` functions and callers read, never "0:classify".

A run keeps each verified output under its plan item's id (`"<position>:<step>"`), because a
plan may run a step more than once. `StepResults` reads them back by step name:

    results = StepResults(state)              # a run's state, or its `results` mapping
    results.get("classify")                   # the latest verified value, as stored (a dict)
    results.get("extract", Refund)            # the same, validated into `Refund` (or None)
    results.get("classify", Label).label      # a classifier's answer, typed
    results.all("lookup")                     # every run of a step, in plan order
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ConfigDict

__all__ = ["Label", "StepResults", "item_step"]

ModelT = TypeVar("ModelT", bound=BaseModel)


class Label(BaseModel):
    """A classifier step's verified value: the label and the model's confidence."""

    model_config = ConfigDict(frozen=True)

    label: str
    confidence: float | None = None


def item_step(item_id: str) -> str:
    """The step name of a plan item id ("2:reply" -> "reply"; an id without a position is the name)."""
    position, sep, step = item_id.partition(":")
    return step if sep and position.isdigit() else item_id


class StepResults:
    """A run's verified step outputs by step name (the latest run of each step).

    Iterating gives the step names in plan order; `results[step]` the stored value (a
    KeyError for a step that did not run). `get(step, Model)` validates the stored value
    into `Model`: a value that does not fit is an error, not None. (Not a Mapping: the
    second argument of `get` is a model, not a default; write `results.get(step) or {}`.)
    """

    def __init__(self, source: Mapping[str, Any]) -> None:
        """`source`: a run's state (its "results" key is read) or the results mapping itself."""
        nested = source.get("results")
        results: Mapping[str, Any] = nested if isinstance(nested, Mapping) else source
        self._by_item: dict[str, Any] = dict(results)
        self._latest: dict[str, Any] = {}
        for item_id, value in self._by_item.items():
            self._latest.pop(item_step(item_id), None)  # re-inserted: plan order follows the latest run
            self._latest[item_step(item_id)] = value

    @overload
    def get(self, step: str) -> Any: ...

    @overload
    def get(self, step: str, model: type[ModelT]) -> ModelT | None: ...

    def get(self, step: str, model: type[ModelT] | None = None) -> Any:
        """The latest verified value of `step` (None if it did not run or gave nothing), as
        stored, or validated into `model`."""
        if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"StepResults.get(step, model): model must be a pydantic model class, got {model!r}")
        value = self._latest.get(step)
        if model is None or value is None:
            return value
        return model.model_validate(value)

    def all(self, step: str) -> list[Any]:
        """Every verified value of `step`, in plan order (a plan may run a step twice)."""
        return [value for item_id, value in self._by_item.items() if item_step(item_id) == step]

    @property
    def by_item(self) -> Mapping[str, Any]:
        """The results as the run stores them, by plan item id."""
        return self._by_item

    def as_dict(self) -> dict[str, Any]:
        """{step name: latest stored value}, in plan order."""
        return dict(self._latest)

    def __getitem__(self, step: str) -> Any:
        return self._latest[step]

    def __contains__(self, step: object) -> bool:
        return step in self._latest

    def __iter__(self) -> Iterator[str]:
        return iter(self._latest)

    def __len__(self) -> int:
        return len(self._latest)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StepResults) and other._by_item == self._by_item

    def __repr__(self) -> str:
        return f"StepResults({self._latest!r})"
