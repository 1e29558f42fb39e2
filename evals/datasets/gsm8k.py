"""Math word problems with recorded model answers: RouteLLM's GSM8K responses CSV.

Each row is a GSM8K question, the raw answers of a weak and a strong model, and whether
each was graded correct. The file has no gold answer column: the correctness booleans are
the ground truth for replaying the two models, and a numeric reference answer is derived
where it is unambiguous (the final numbers of the answers graded correct agree) so that a
third model's answer can be graded too. RouteLLM drops prompts that near-duplicate its
router training data (``contaminated_prompts.jsonl``); so does this loader by default.
"""

from __future__ import annotations

import math
from pathlib import Path

from tierflow.agents.numbers import extract_final_number

from ._files import existing_file, file_stem, read_csv_rows, read_jsonl
from .cases import Case, Dataset, DatasetFormatError, DatasetSource, FrozenModel

__all__ = [
    "contaminated_prompts",
    "ROUTELLM_WEAK_MODEL",
    "ROUTELLM_STRONG_MODEL",
    "RecordedAnswer",
    "MathInputs",
    "MathExpected",
    "MathCase",
    "MathDataset",
    "load_routellm_gsm8k",
]

ROUTELLM_WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
ROUTELLM_STRONG_MODEL = "gpt-4-1106-preview"
_BOOLEANS = {"True": True, "False": False}


class RecordedAnswer(FrozenModel):
    """What one model answered and whether RouteLLM graded it correct."""

    model: str
    response: str
    correct: bool
    final_number: float | None


class MathInputs(FrozenModel):
    question: str


class MathExpected(FrozenModel):
    weak: RecordedAnswer
    strong: RecordedAnswer
    # The final number shared by every answer graded correct; None when no answer was
    # correct, or the correct ones disagree (then only the booleans can grade).
    reference_answer: float | None = None


MathCase = Case[MathInputs, MathExpected]
MathDataset = Dataset[MathInputs, MathExpected]


def _reference(*answers: RecordedAnswer) -> float | None:
    numbers = [answer.final_number for answer in answers if answer.correct]
    values = [number for number in numbers if number is not None]
    if not values or len(values) != len(numbers):
        return None
    first = values[0]
    if all(math.isclose(value, first, rel_tol=1e-9, abs_tol=1e-9) for value in values):
        return first
    return None


def contaminated_prompts(path: Path) -> set[str]:
    """The `eval_prompt`s of a RouteLLM contaminated_prompts.jsonl (rows RouteLLM drops)."""
    prompts: set[str] = set()
    for line, record in read_jsonl(path):
        if not isinstance(record, dict) or not isinstance(record.get("eval_prompt"), str):
            raise DatasetFormatError(path, "each line must carry an eval_prompt string", row=line)
        prompts.add(record["eval_prompt"])
    return prompts


def _answer(path: Path, row: int, record: dict[str, str], model: str) -> RecordedAnswer:
    verdict = record[model]
    if verdict not in _BOOLEANS:
        raise DatasetFormatError(path, f"column {model!r} must be True or False, got {verdict!r}", row=row)
    response = record[f"{model}_response"]
    return RecordedAnswer(
        model=model, response=response, correct=_BOOLEANS[verdict], final_number=extract_final_number(response)
    )


def load_routellm_gsm8k(
    path: str | Path,
    *,
    contaminated_path: str | Path | None = None,
    drop_contaminated: bool = True,
    weak_model: str = ROUTELLM_WEAK_MODEL,
    strong_model: str = ROUTELLM_STRONG_MODEL,
    limit: int | None = None,
    seed: int = 0,
) -> MathDataset:
    """A RouteLLM responses CSV (``prompt``, one boolean and one ``_response`` column per
    model). Prompts listed in ``contaminated_path`` (default: ``contaminated_prompts.jsonl``
    next to the CSV, when present) are dropped unless ``drop_contaminated=False``. Case
    ids keep the row number in the file, so dropping rows renumbers nothing."""
    csv_path = existing_file(path, "RouteLLM GSM8K responses CSV")
    columns = ["prompt"] + [name for model in (weak_model, strong_model) for name in (model, f"{model}_response")]
    rows = read_csv_rows(csv_path, columns)

    contaminated: set[str] = set()
    contaminated_file: Path | None = None
    if drop_contaminated:
        if contaminated_path is not None:
            contaminated_file = existing_file(contaminated_path, "contaminated prompts JSONL")
        elif csv_path.with_name("contaminated_prompts.jsonl").is_file():
            contaminated_file = csv_path.with_name("contaminated_prompts.jsonl")
        if contaminated_file is not None:
            contaminated = contaminated_prompts(contaminated_file)

    stem = file_stem(csv_path)
    cases: list[MathCase] = []
    dropped = 0
    for row, record in enumerate(rows):
        if record["prompt"] in contaminated:
            dropped += 1
            continue
        weak = _answer(csv_path, row, record, weak_model)
        strong = _answer(csv_path, row, record, strong_model)
        cases.append(
            MathCase(
                id=f"gsm8k-{stem}-{row:04d}",
                inputs=MathInputs(question=record["prompt"]),
                expected=MathExpected(weak=weak, strong=strong, reference_answer=_reference(strong, weak)),
                metadata={"row": row},
            )
        )
    dataset = MathDataset(
        name="routellm_gsm8k",
        cases=cases,
        source=DatasetSource(path=str(csv_path), format="routellm-gsm8k-csv"),
        metadata={
            "weak_model": weak_model,
            "strong_model": strong_model,
            "rows_in_file": len(rows),
            "contaminated_dropped": dropped,
            "contaminated_path": str(contaminated_file) if contaminated_file else None,
        },
    )
    return dataset.sample(
        limit, seed, stratify=lambda case: (case.expected.weak.correct, case.expected.strong.correct)
    )
