"""Convert RouteLLM's recorded-outcome CSVs to tierflow's JSONL of recorded outcomes.

The JSONL format (model_tiers/providers/recorded.py) holds the outcomes of any ladder of
models per case; the replay provider answers from it and users log their own traffic in
it. RouteLLM ships two CSV layouts::

    python -m tierflow.evals.datasets.recorded_convert routellm-gsm8k SRC.csv OUT.jsonl
    python -m tierflow.evals.datasets.recorded_convert routellm-mmlu SRC_DIR_OR_CSV OUT.jsonl

* ``routellm-gsm8k``: columns ``prompt``, per model ``<model>`` (True/False) and
  ``<model>_response``. One case per row, id ``gsm8k-<row>``; each outcome's ``answer`` is
  the response, ``correct`` the grade. ``reference`` is the final number every answer
  graded correct agrees on (the rule of evals/datasets/gsm8k.py), when there is one.
* ``routellm-mmlu``: a folder of ``mmlu_<subject>.csv`` (or one such file), columns
  ``prompt`` and per model ``<model>`` (True/False), no responses. Id
  ``mmlu-<subject>-<row>``, ``group`` the subject, ``answer`` null (the response, should
  a file have a ``<model>_response`` column).

Rows are numbered 0.. in file order. Models keep the CSV's column order (RouteLLM lists the
weak model first: the ladder convention). Prompts listed as ``eval_prompt`` in
``contaminated_prompts.jsonl`` (``--contaminated``, else that file in the source's folder
or the folder above it, where RouteLLM's MMLU layout keeps it) stay in, marked
``"contaminated": true``: dropping them is the consumer's choice, as in RouteLLM's evaluator.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from tierflow.agents.numbers import extract_final_number
from tierflow.model_tiers.errors import ConfigError, TierflowError
from tierflow.model_tiers.providers.recorded import RecordedCase, RecordedOutcome, write_recorded

from .cases import DatasetFormatError
from .gsm8k import contaminated_prompts

__all__ = ["LAYOUTS", "convert_routellm_gsm8k", "convert_routellm_mmlu", "summary_line", "main"]

LAYOUTS = ("routellm-gsm8k", "routellm-mmlu")
CONTAMINATED_FILE = "contaminated_prompts.jsonl"
_GRADES = {"True": True, "False": False, "": None}


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(header, rows) of a headed CSV whose first column must be ``prompt``."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except OSError as err:
        raise ConfigError(f"cannot read the CSV: {err.strerror or err}", source=str(path)) from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise DatasetFormatError(path, f"not a readable UTF-8 CSV ({err})") from None
    if "prompt" not in header:
        raise DatasetFormatError(path, f"CSV header {header} has no 'prompt' column; is this a RouteLLM responses file?")
    return header, rows


def _models(path: Path, header: list[str], *, responses: bool) -> list[str]:
    models = [c for c in header if c != "prompt" and not c.endswith("_response")]
    if not models:
        raise DatasetFormatError(path, f"CSV header {header} has no model column (True/False per model)")
    missing = [m for m in models if responses and f"{m}_response" not in header]
    if missing:
        raise DatasetFormatError(
            path, f"no '<model>_response' column for {missing}; a file without responses is the routellm-mmlu layout"
        )
    return models


def _grade(path: Path, row: int, model: str, value: str | None) -> bool | None:
    if value not in _GRADES:
        raise DatasetFormatError(path, f"column {model!r} must be True or False, got {value!r}", row=row)
    return _GRADES[value]


def _agreed_number(answers: list[tuple[str, bool | None]]) -> int | float | None:
    """The final number all answers graded correct share; None when none is correct or they
    disagree (then only the grades can judge a third model)."""
    numbers = [extract_final_number(text) for text, correct in answers if correct]
    if not numbers or any(n is None for n in numbers):
        return None
    first = numbers[0]
    assert first is not None
    if not all(n is not None and math.isclose(n, first, rel_tol=1e-9, abs_tol=1e-9) for n in numbers):
        return None
    return int(first) if float(first).is_integer() else first


def _contaminated(path: Path | None, source: Path) -> set[str]:
    if path is None:
        folder = source if source.is_dir() else source.parent
        path = next((f / CONTAMINATED_FILE for f in (folder, folder.parent) if (f / CONTAMINATED_FILE).is_file()), None)
        if path is None:
            return set()
    elif not path.is_file():
        raise ConfigError(f"contaminated prompts file not found at {path}")
    return contaminated_prompts(path)


def _case(
    case_id: str, prompt: str, outcomes: dict[str, RecordedOutcome], contaminated: set[str], **extra: object
) -> RecordedCase:
    if prompt in contaminated:  # RouteLLM's rule: the prompt equals an eval_prompt
        extra["contaminated"] = True
    return RecordedCase.model_validate({"id": case_id, "input": prompt, **extra, "outcomes": outcomes})


def convert_routellm_gsm8k(source: Path, *, contaminated: Path | None = None) -> list[RecordedCase]:
    """The cases of a RouteLLM GSM8K responses CSV, in file order."""
    if not source.is_file():
        raise ConfigError(f"RouteLLM GSM8K responses CSV not found at {source}")
    header, rows = _read_csv(source)
    models = _models(source, header, responses=True)
    flagged = _contaminated(contaminated, source)
    cases = []
    for row, record in enumerate(rows):
        answers = {m: (record.get(f"{m}_response") or "", _grade(source, row, m, record.get(m))) for m in models}
        outcomes = {m: RecordedOutcome(answer=text, correct=correct) for m, (text, correct) in answers.items()}
        reference = _agreed_number(list(answers.values()))
        cases.append(_case(f"gsm8k-{row}", record["prompt"], outcomes, flagged, reference=reference))
    return cases


def convert_routellm_mmlu(source: Path, *, contaminated: Path | None = None) -> list[RecordedCase]:
    """The cases of a folder of RouteLLM ``mmlu_<subject>.csv`` files (or of one), by subject."""
    if source.is_dir():
        files = sorted(source.glob("mmlu_*.csv"))
        if not files:
            raise ConfigError(f"no mmlu_<subject>.csv files in {source}; pass RouteLLM's mmlu/responses folder or one file")
    elif source.is_file():
        files = [source]
    else:
        raise ConfigError(f"RouteLLM MMLU responses folder or CSV not found at {source}")
    flagged = _contaminated(contaminated, source)
    cases = []
    for path in files:
        subject = path.stem.removeprefix("mmlu_")
        header, rows = _read_csv(path)
        models = _models(path, header, responses=False)
        for row, record in enumerate(rows):
            outcomes = {
                m: RecordedOutcome(answer=record.get(f"{m}_response"), correct=_grade(path, row, m, record.get(m)))
                for m in models
            }
            cases.append(_case(f"mmlu-{subject}-{row}", record["prompt"], outcomes, flagged, group=subject))
    return cases


def summary_line(cases: Sequence[RecordedCase], out: Path) -> str:
    """``<n> cases -> OUT (<k> contaminated); <model> <right>/<graded> = <pct>, ...``."""
    models: dict[str, list[int]] = {}
    for case in cases:
        for name, outcome in case.outcomes.items():
            tally = models.setdefault(name, [0, 0])
            if outcome.correct is not None:
                tally[0] += outcome.correct
                tally[1] += 1
    accuracy = ", ".join(
        f"{name} {right}/{graded} = {right / graded:.2%}" if graded else f"{name} ungraded"
        for name, (right, graded) in models.items()
    )
    flagged = sum(1 for case in cases if (case.model_extra or {}).get("contaminated"))
    return f"{len(cases)} cases -> {out} ({flagged} contaminated); accuracy: {accuracy}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other failure of this command (argparse prints the usage too).
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m tierflow.evals.datasets.recorded_convert", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("layout", choices=LAYOUTS, help="the source's layout")
    parser.add_argument("source", type=Path, help="GSM8K: the responses CSV; MMLU: the responses folder or one mmlu_<subject>.csv")
    parser.add_argument("out", type=Path, help="the JSONL file to write")
    parser.add_argument("--contaminated", type=Path, help=f"{CONTAMINATED_FILE} (default: in the source's folder or the one above)")
    args = parser.parse_args(argv)
    convert = convert_routellm_gsm8k if args.layout == "routellm-gsm8k" else convert_routellm_mmlu
    try:
        cases = convert(args.source.expanduser(), contaminated=args.contaminated)
        if not cases:
            raise ConfigError(f"{args.source} has no data rows; nothing to convert")
        if not args.out.parent.is_dir():
            raise ConfigError(f"the output folder {args.out.parent} does not exist; create it or write elsewhere")
        # Written beside the target and moved into place: a failed run leaves no half file.
        partial = args.out.with_name(args.out.name + ".partial")
        try:
            write_recorded(partial, cases)
            os.replace(partial, args.out)
        finally:
            partial.unlink(missing_ok=True)
    except (TierflowError, OSError) as err:
        detail = f"{err.filename}: {err.strerror}" if isinstance(err, OSError) and err.filename else str(err)
        print(f"{parser.prog}: error: {detail}", file=sys.stderr)
        return 2
    print(summary_line(cases, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
