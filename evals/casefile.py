"""Evals without writing a suite: a case file of inputs and expected values, graded per field.

    tierflow eval my_agent.py:WORKFLOW --dataset cases.jsonl [--grade intent=exact ...]

A JSONL case file is one case per line:

    {"id": "c1", "input": "I lost my card", "expected": {"intent": "card_lost"},
     "steps": {"extract": {"amount": "12.50"}}}

* `input`: the request text, or the graph's whole input object (`{"request": ..., "functions": [...]}`).
  `inputs` (LangSmith's and pydantic-evals' key) is read the same way, and may also be an
  object of one text field (`{"question": "..."}`), which is then the request.
* `expected`: values of the run's final output (what the workflow's `finalize` returns).
* `steps` (optional): values of one step's verified result, by step name. Steps with
  expectations also get verifier precision and recall (was a rejected candidate wrong?).
* An optional first line `{"__evaluators__": {"intent": "exact", "extract/amount": "numeric:0.01"}}`
  picks the evaluator per field (`STEP/FIELD` for a step's field); `--grade FIELD=KIND`
  on the command line overrides it.

A CSV case file has an `input` (or `inputs`) column, `expected.FIELD` columns and `step.STEP.FIELD`
columns (an `id` column is optional; an empty cell is no expectation; a cell that parses
as JSON is read as JSON, so `12.5` is a number and `["a","b"]` a list).

Evaluators (`KIND[:ARG]`): `exact`, `normalized` (case, spaces and punctuation ignored),
`numeric[:TOL]` (absolute tolerance, default 1e-6), `set` (same members), `subset`
(expected within the output), `regex` (the expected value is a pattern the output must
fully match), `json_schema` (the expected value is a JSON schema the output must satisfy),
`judge[:TIER]` (a model on the `judge` role's tier, or TIER, says whether the output means
the expected value; its calls are the eval's own cost, not the case's). Without a choice a
field is graded by its expected value's type: numbers `numeric`, lists `set`, others `exact`.

The headline metric is `all_fields`: a case passes when every field it has an expectation
for passes. Every field also gets its own metric, so the report shows which field fails.
"""

from __future__ import annotations

import csv
import json
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import Field

from tierflow.agents.loop.verify import JudgeVerdict
from tierflow.evals.datasets import Case, Dataset, DatasetFormatError, DatasetSource
from tierflow.evals.datasets._files import read_jsonl
from tierflow.evals.datasets.cases import FrozenModel
from tierflow.evals.evaluators.base import EvaluationResult, verdict
from tierflow.evals.harness.suite import GraphOutcome, StepTruth, Suite
from tierflow.model_tiers import ConfigError, TierRegistry, load_tier_config
from tierflow.model_tiers.ledger_store import CallScope, call_scope, default_ledger_store

__all__ = [
    "CaseInputs",
    "CaseExpected",
    "FieldCheck",
    "parse_check",
    "parse_grades",
    "load_case_file",
    "casefile_suite",
    "is_case_file",
    "TierJudge",
]

EVALUATORS_KEY = "__evaluators__"
# Where a case line's request is: ours, and LangSmith's and pydantic-evals' name for it.
INPUT_KEYS: tuple[str, ...] = ("input", "inputs")
# Other tools' names for the expected values: a line that uses one is told to say `expected`.
_FOREIGN_EXPECTED_KEYS: tuple[str, ...] = ("outputs", "expected_output", "reference_outputs")
Kind = Literal["exact", "normalized", "numeric", "set", "subset", "regex", "json_schema", "judge"]
KINDS: tuple[str, ...] = ("exact", "normalized", "numeric", "set", "subset", "regex", "json_schema", "judge")


class CaseInputs(FrozenModel):
    payload: dict[str, Any]


class CaseExpected(FrozenModel):
    output: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = Field(default_factory=dict)


class FieldCheck(FrozenModel):
    """How one field is graded: `kind`, plus its tolerance (numeric) or tier (judge)."""

    kind: Kind
    tolerance: float = 1e-6
    tier: str | None = None


def parse_check(spec: str, *, where: str) -> FieldCheck:
    """`exact`, `numeric:0.01`, `judge:frontier`... -> a FieldCheck (a clear error otherwise)."""
    kind, _, arg = spec.strip().partition(":")
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown evaluator '{kind}'; use one of {', '.join(KINDS)} (numeric:TOL, judge:TIER)")
    if kind == "numeric" and arg:
        try:
            return FieldCheck(kind="numeric", tolerance=float(arg))
        except ValueError:
            raise ConfigError(f"{where}: numeric tolerance must be a number, got {arg!r}") from None
    if kind == "judge":
        return FieldCheck(kind="judge", tier=arg or None)
    if arg:
        raise ConfigError(f"{where}: evaluator '{kind}' takes no argument, got {spec!r}")
    return FieldCheck.model_validate({"kind": kind})  # a name in KINDS: pydantic reads it as the Literal


def _default_check(expected: Any) -> FieldCheck:
    if isinstance(expected, bool) or not isinstance(expected, (int, float, list)):
        return FieldCheck(kind="exact")
    return FieldCheck(kind="set" if isinstance(expected, list) else "numeric")


# -- reading case files ------------------------------------------------------------------------


def is_case_file(path: str | Path) -> bool:
    """Whether `path` looks like a generic case file: a .jsonl whose first case line has an
    `input` or `inputs` (and no recorded `outcomes`), or a .csv with such a column (a
    dataset's own files, like Banking77's CSV, do not)."""
    source = Path(path)
    if source.suffix.lower() not in (".jsonl", ".csv") or not source.is_file():
        return False
    try:
        with source.open(encoding="utf-8", newline="") as handle:
            if source.suffix.lower() == ".csv":
                return any(key in INPUT_KEYS for key in next(csv.reader(handle), None) or [])
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    if isinstance(record, dict) and EVALUATORS_KEY in record:
                        continue
                    # Recorded outcomes (model_tiers/providers/recorded.py) are the
                    # `recorded` suite's dataset, not a case file.
                    return isinstance(record, dict) and any(k in record for k in INPUT_KEYS) and "outcomes" not in record
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error):
        return False
    return False


def _cell(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _keys(found: Sequence[str]) -> str:
    return ", ".join(f"'{k}'" for k in found) or "none"


def _request_payload(path: Path, row: int, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The graph's input from a case line's `input` (or `inputs`): the request text, the
    graph's input object (with a `request`), or an object of one text field."""
    given_keys = [k for k in INPUT_KEYS if k in raw]
    if not given_keys:
        raise DatasetFormatError(
            path,
            f"a case line needs the key 'input' (or 'inputs'): the request text, or the graph's input object; "
            f"this line has the keys {_keys(list(raw))}",
            row=row,
        )
    if len(given_keys) > 1:
        raise DatasetFormatError(path, "a case line has both 'input' and 'inputs'; give one of them", row=row)
    key = given_keys[0]
    given = raw[key]
    if isinstance(given, str):
        return {"request": given}
    if isinstance(given, Mapping):
        if isinstance(given.get("request"), str):
            return dict(given)
        if len(given) == 1 and isinstance(text := next(iter(given.values())), str):
            return {"request": text}
        found = f"an object with the keys {_keys(list(given))}"
    else:
        found = type(given).__name__
    raise DatasetFormatError(
        path,
        f"'{key}' must be the request text, an object with a 'request' (the graph's input), or an object of one "
        f"text field; got {found}",
        row=row,
    )


def _case(path: Path, row: int, raw: Mapping[str, Any]) -> Case[CaseInputs, CaseExpected]:
    payload = _request_payload(path, row, raw)
    foreign = [k for k in _FOREIGN_EXPECTED_KEYS if k in raw]
    if foreign and "expected" not in raw:
        raise DatasetFormatError(
            path, f"the expected values go under the key 'expected' (an object of fields); this line has {_keys(foreign)}", row=row
        )
    expected, steps = raw.get("expected") or {}, raw.get("steps") or {}
    if not isinstance(expected, Mapping) or not isinstance(steps, Mapping) or not all(isinstance(v, Mapping) for v in steps.values()):
        raise DatasetFormatError(path, "'expected' must be an object and 'steps' an object of objects", row=row)
    case_id = str(raw.get("id") or f"{path.stem}-{row}")
    return Case(
        id=case_id,
        inputs=CaseInputs(payload=payload),
        expected=CaseExpected(output=dict(expected), steps={str(k): dict(v) for k, v in steps.items()}),
        metadata={"row": row},
    )


def _read_jsonl(path: Path) -> tuple[list[Case[CaseInputs, CaseExpected]], dict[str, str]]:
    cases, evaluators = [], {}
    for number, record in read_jsonl(path):
        if not isinstance(record, dict):
            raise DatasetFormatError(path, "each line must be a JSON object", row=number)
        if EVALUATORS_KEY in record:
            if not isinstance(record[EVALUATORS_KEY], dict):
                raise DatasetFormatError(path, f"{EVALUATORS_KEY} must map fields to evaluators", row=number)
            evaluators.update({str(k): str(v) for k, v in record[EVALUATORS_KEY].items()})
            continue
        cases.append(_case(path, number, record))
    return cases, evaluators


def _read_csv(path: Path) -> list[Case[CaseInputs, CaseExpected]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        if not any(key in columns for key in INPUT_KEYS):
            raise DatasetFormatError(
                path,
                f"a CSV case file needs an 'input' (or 'inputs') column, and expected.FIELD / step.STEP.FIELD columns; "
                f"its header has {_keys(columns)}",
            )
        cases = []
        for number, row in enumerate(reader, start=2):
            expected: dict[str, Any] = {}
            steps: dict[str, dict[str, Any]] = {}
            for column, value in row.items():
                if value in (None, "") or column is None:
                    continue
                if column.startswith("expected."):
                    expected[column.removeprefix("expected.")] = _cell(value)
                elif column.startswith("step."):
                    step, _, name = column.removeprefix("step.").partition(".")
                    if not name:
                        raise DatasetFormatError(path, f"column {column!r} must be step.STEP.FIELD", row=1)
                    steps.setdefault(step, {})[name] = _cell(value)
            given = {key: row[key] for key in INPUT_KEYS if key in row}
            cases.append(_case(path, number, {"id": row.get("id"), **given, "expected": expected, "steps": steps}))
    return cases


def load_case_file(path: str | Path) -> tuple[Dataset[CaseInputs, CaseExpected], dict[str, str]]:
    """The cases of a JSONL or CSV case file, and the evaluators its header names."""
    source = Path(path)
    try:
        evaluators: dict[str, str]
        if source.suffix.lower() == ".csv":
            cases, evaluators = _read_csv(source), {}
        else:
            cases, evaluators = _read_jsonl(source)
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetFormatError(source, f"cannot read the case file: {err}") from None
    except csv.Error as err:
        raise DatasetFormatError(source, f"not a readable CSV file: {err}") from None
    if not cases:
        raise DatasetFormatError(source, "no cases (one JSON object per line, or one CSV row per case)")
    try:
        dataset = Dataset[CaseInputs, CaseExpected](name=source.stem, cases=cases, source=DatasetSource(path=str(source), format="cases"))
    except ValueError as err:
        raise DatasetFormatError(source, str(err)) from None
    return dataset, evaluators


# -- grading -----------------------------------------------------------------------------------

_PUNCT = str.maketrans("", "", string.punctuation)


def _normalized(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return " ".join(text.casefold().translate(_PUNCT).split())


def _as_list(value: Any) -> list[Any] | None:
    return list(value) if isinstance(value, (list, tuple, set)) else None


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# (check, output value, expected value) -> (passed, reason): a model's opinion (`TierJudge`).
Judge = Callable[[FieldCheck, Any, Any], tuple[bool, str | None]]


def grade(check: FieldCheck, value: Any, expected: Any, judge: Judge | None = None) -> tuple[bool, str | None]:
    """Whether `value` matches `expected` under `check`, and why not."""
    if expected is None:  # "this field must be absent", whatever the evaluator
        return value is None, f"expected no value, got {value!r}"
    if check.kind == "exact":
        return value == expected, f"expected {expected!r}, got {value!r}"
    if check.kind == "normalized":
        return _normalized(value) == _normalized(expected), f"expected {expected!r} (normalised), got {value!r}"
    if check.kind == "numeric":
        try:
            ok = abs(float(value) - float(expected)) <= check.tolerance
        except (TypeError, ValueError):
            return False, f"expected a number near {expected!r}, got {value!r}"
        return ok, f"expected {expected} +/- {check.tolerance:g}, got {value}"
    if check.kind in ("set", "subset"):
        got, want = _as_list(value), _as_list(expected)
        if got is None or want is None:
            return False, f"expected a list, got {value!r}"
        have, need = {_key(v) for v in got}, {_key(v) for v in want}
        ok = have == need if check.kind == "set" else need <= have
        return ok, f"expected {'exactly' if check.kind == 'set' else 'at least'} {want!r}, got {got!r}"
    if check.kind == "regex":
        try:
            return re.fullmatch(str(expected), "" if value is None else str(value)) is not None, f"{value!r} does not match /{expected}/"
        except re.error as err:
            raise ConfigError(f"the expected pattern {expected!r} is not a regular expression: {err}") from None
    if check.kind == "json_schema":
        try:
            errors = list(Draft202012Validator(expected).iter_errors(value))
        except SchemaError as err:
            raise ConfigError(f"the expected value is not a JSON schema: {err.message}") from None
        return not errors, (errors[0].message if errors else None)
    if judge is None:
        raise ConfigError("a judge evaluator needs a judge (the harness builds one from the tiers file)")
    return judge(check, value, expected)


@dataclass(frozen=True)
class FieldEvaluator:
    """Grades one field of the final output (step None) or of one step's result."""

    name: str
    step: str | None
    field: str
    check: FieldCheck
    judge: Judge | None = None

    def value_of(self, output: Mapping[str, Any]) -> Any:
        source = output.get("final") if self.step is None else (output.get("steps") or {}).get(self.step)
        return (source or {}).get(self.field) if isinstance(source, Mapping) else None

    def expected_of(self, case: Case[CaseInputs, CaseExpected]) -> tuple[bool, Any]:
        where = case.expected.output if self.step is None else case.expected.steps.get(self.step, {})
        return self.field in where, where.get(self.field)

    def evaluate(self, output: Any, case: Case[CaseInputs, CaseExpected]) -> EvaluationResult:
        present, expected = self.expected_of(case)
        if not present:
            return EvaluationResult(name=self.name, score=0.0, passed=None, reason="no expectation for this case")
        value = self.value_of(output) if isinstance(output, Mapping) else None
        passed, reason = grade(self.check, value, expected, self.judge)
        return verdict(self.name, passed, reason, got=value, expected=expected)


@dataclass(frozen=True)
class AllFields:
    """A case passes when every field it has an expectation for passes."""

    fields: tuple[FieldEvaluator, ...]
    name: str = "all_fields"

    def evaluate(self, output: Any, case: Case[CaseInputs, CaseExpected]) -> EvaluationResult:
        results = [f.evaluate(output, case) for f in self.fields]
        judged = [r for r in results if r.passed is not None]
        if not judged:
            return EvaluationResult(name=self.name, score=0.0, passed=None, reason="the case has no expectations")
        failed = [r for r in judged if not r.passed]
        return verdict(self.name, not failed, "; ".join(f"{r.name}: {r.reason}" for r in failed))


def _step_truth(step: str, fields: Sequence[FieldEvaluator]) -> StepTruth:
    mine = [f for f in fields if f.step == step]

    def is_correct(candidate: Any, case: Case[CaseInputs, CaseExpected]) -> bool | None:
        if step not in case.expected.steps:
            return None
        if not isinstance(candidate, Mapping):
            return False
        output = {"steps": {step: candidate}}
        results = [f.evaluate(output, case) for f in mine]
        return all(r.passed for r in results if r.passed is not None)

    return StepTruth(node=step, is_correct=is_correct, description=f"every expected field of '{step}' matches")


def _checks(
    dataset: Dataset[CaseInputs, CaseExpected], named: Mapping[str, str], step_names: Sequence[str]
) -> dict[tuple[str | None, str], FieldCheck]:
    """(step or None, field) -> its check: the one named, else the default for its type."""
    checks: dict[tuple[str | None, str], FieldCheck] = {}
    for case in dataset.cases:
        for field_name, value in case.expected.output.items():
            checks.setdefault((None, field_name), _default_check(value))
        for step, values in case.expected.steps.items():
            if step not in step_names:
                raise ConfigError(
                    f"case {case.id} expects a result of step '{step}', which the graph does not have ({', '.join(step_names)})"
                )
            for field_name, value in values.items():
                checks.setdefault((step, field_name), _default_check(value))
    for key, spec in named.items():
        step, _, field_name = key.rpartition("/")
        target = (step or None, field_name)
        if target not in checks:
            raise ConfigError(f"--grade / {EVALUATORS_KEY}: no case expects '{key}' (fields: {', '.join(_label(k) for k in checks)})")
        checks[target] = parse_check(spec, where=f"evaluator for '{key}'")
    return checks


def _label(key: tuple[str | None, str]) -> str:
    return key[1] if key[0] is None else f"{key[0]}/{key[1]}"


def casefile_suite(
    graph_ref: str,
    step_names: Sequence[str],
    path: str | Path,
    *,
    grades: Mapping[str, str] | None = None,
    judge: Judge | None = None,
) -> Suite:
    """A `Suite` for `graph_ref` graded by the case file at `path` (see the module's docstring)."""
    dataset, named = load_case_file(path)
    checks = _checks(dataset, {**named, **(grades or {})}, step_names)
    if any(c.kind == "judge" for c in checks.values()) and judge is None:
        raise ConfigError("a judge evaluator is named but no judge tier is configured")
    fields = tuple(FieldEvaluator(name=_label(k), step=k[0], field=k[1], check=c, judge=judge) for k, c in checks.items())
    expected_steps = sorted({s for s, _ in checks if s is not None})
    grades_output = any(s is None for s, _ in checks)

    def load(_path: Path | None, limit: int | None, seed: int) -> Dataset[CaseInputs, CaseExpected]:
        return dataset.sample(limit, seed)

    def to_output(outcome: GraphOutcome) -> dict[str, Any]:
        return {
            "status": outcome.status,
            "final": {k: v for k, v in outcome.final.items() if k != "status"},
            "steps": {s: outcome.result_of(s) for s in step_names},
        }

    return Suite(
        name="cases",
        graph=graph_ref,
        description=f"{graph_ref} graded by the case file {Path(path).name}",
        dataset="cases",
        load=load,
        to_input=lambda case: dict(case.inputs.payload),
        to_output=to_output,
        evaluators=(AllFields(fields), *fields),
        primary="all_fields",
        truths=tuple(_step_truth(s, fields) for s in expected_steps),
        # A file that grades only steps lets each case stop once they are verified.
        graded_steps=() if grades_output else tuple(expected_steps),
        metric_notes={f.name: f"{f.check.kind}" + (f" (+/- {f.check.tolerance:g})" if f.check.kind == "numeric" else "") for f in fields},
        notes=(f"cases from {path}; evaluators per field as listed; all_fields = every expected field of the case right",),
    )


def parse_grades(specs: Sequence[str] | None) -> dict[str, str]:
    """`--grade FIELD=KIND[:ARG]` flags -> {field: spec} (checked when the suite is built)."""
    out: dict[str, str] = {}
    for spec in specs or ():
        field_name, sep, kind = spec.partition("=")
        if not sep or not field_name.strip() or not kind.strip():
            raise ConfigError(f"--grade takes FIELD=KIND (e.g. intent=exact, extract/amount=numeric:0.01), got {spec!r}")
        out[field_name.strip()] = kind.strip()
    return out


class TierJudge:
    """The `judge` evaluator: a model on a tier (the `judge` role's, unless the field names
    one) says whether an output means the expected value. Built on first use."""

    def __init__(self, tiers_file: str | None) -> None:
        self._tiers_file = tiers_file
        self._registry: TierRegistry | None = None

    def __call__(self, check: FieldCheck, value: Any, expected: Any) -> tuple[bool, str | None]:
        if self._registry is None:
            self._registry = TierRegistry(load_tier_config(self._tiers_file))
        tier = check.tier or self._registry.config.roles["judge"]
        messages = [
            SystemMessage("You grade an answer against the expected one. ok=true only if they mean the same thing."),
            HumanMessage(f"Expected:\n{json.dumps(expected, ensure_ascii=False)}\n\nAnswer:\n{json.dumps(value, ensure_ascii=False)}"),
        ]
        # A judge's calls are ledger rows too (source "judge"), one unit of work per grading.
        scope = CallScope(store=default_ledger_store(), source="judge", item_id="judge", step="judge", label="judge", role="judge")
        with call_scope(scope):
            reply = self._registry.call(tier, messages, schema=JudgeVerdict)
        return bool(reply.value.ok), reply.value.reason
