"""Intent-classification datasets: Banking77 (CSV) and CLINC150 (JSON, with out-of-scope).

Both become ``IntentDataset``: one utterance in, one gold label out. The closed label set
goes into ``dataset.metadata["labels"]`` so a classifier node and ``macro_f1`` use the
same set. CLINC150's out-of-scope queries keep the upstream label ``"oos"`` and are
flagged ``out_of_scope=True``: the graph should hand them to a human, not guess an intent.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._files import existing_file, file_stem, read_csv_rows, read_json
from .cases import Case, Dataset, DatasetFormatError, DatasetSource, FrozenModel

__all__ = [
    "OUT_OF_SCOPE_LABEL",
    "IntentInputs",
    "IntentExpected",
    "IntentCase",
    "IntentDataset",
    "by_label",
    "load_banking77",
    "load_clinc150",
]

OUT_OF_SCOPE_LABEL = "oos"


class IntentInputs(FrozenModel):
    text: str


class IntentExpected(FrozenModel):
    label: str
    out_of_scope: bool = False


IntentCase = Case[IntentInputs, IntentExpected]
IntentDataset = Dataset[IntentInputs, IntentExpected]


def by_label(case: IntentCase) -> str:
    """Stratum for ``Dataset.sample``: the gold label."""
    return case.expected.label


def load_banking77(
    path: str | Path,
    *,
    categories_path: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> IntentDataset:
    """Banking77 CSV (``text,category``). The label set comes from ``categories.json``
    (default: next to the CSV); a row whose category is not in it is a format error."""
    csv_path = existing_file(path, "Banking77 CSV")
    labels_path = existing_file(
        categories_path if categories_path is not None else csv_path.with_name("categories.json"),
        "Banking77 categories.json (pass categories_path=)",
    )
    labels = read_json(labels_path)
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise DatasetFormatError(labels_path, "expected a JSON list of intent names")
    label_set = set(labels)
    stem = file_stem(csv_path)
    cases: list[IntentCase] = []
    for row_index, row in enumerate(read_csv_rows(csv_path, ["text", "category"])):
        category = row["category"]
        if category not in label_set:
            raise DatasetFormatError(
                csv_path, f"category {category!r} is not in {labels_path.name}", row=row_index
            )
        cases.append(
            IntentCase(
                id=f"banking77-{stem}-{row_index:05d}",
                inputs=IntentInputs(text=row["text"]),
                expected=IntentExpected(label=category),
                metadata={"row": row_index},
            )
        )
    dataset = IntentDataset(
        name="banking77",
        cases=cases,
        source=DatasetSource(path=str(csv_path), format="banking77-csv"),
        metadata={"labels": list(labels), "split": stem},
    )
    return dataset.sample(limit, seed, stratify=by_label)


def _clinc_keys(split: str, include_oos: bool) -> list[str]:
    if split.startswith("oos_") or not include_oos:
        return [split]
    return [split, f"oos_{split}"]


def load_clinc150(
    path: str | Path,
    *,
    split: str = "train",
    include_oos: bool = True,
    domains_path: str | Path | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> IntentDataset:
    """CLINC150 JSON (keys such as ``train``/``val``/``oos_train``/``oos_val``, or
    ``test``/``oos_test``; each a list of ``[utterance, intent]``).

    ``split="train"`` reads ``train`` plus ``oos_train`` (unless ``include_oos=False``);
    ``split="oos_val"`` reads only that key. When ``domains.json`` is found (default: next
    to the file) each case's metadata gets its domain, and the label set is the 150 intents
    it lists; otherwise the label set is the intents seen in the file. ``"oos"`` is always
    the last label.
    """
    json_path = existing_file(path, "CLINC150 JSON")
    document = read_json(json_path)
    if not isinstance(document, dict):
        raise DatasetFormatError(json_path, "expected a JSON object keyed by split name")
    keys = _clinc_keys(split, include_oos)
    missing = [key for key in keys if key not in document]
    if missing:
        raise DatasetFormatError(
            json_path,
            f"split key(s) {missing} not in the file (keys present: {sorted(document)}); "
            "choose split= from those, or include_oos=False",
        )

    domain_of: dict[str, str] = {}
    domains_file = Path(domains_path) if domains_path is not None else json_path.with_name("domains.json")
    if domains_path is not None or domains_file.is_file():
        domains = read_json(existing_file(domains_file, "CLINC150 domains.json"))
        if not isinstance(domains, dict):
            raise DatasetFormatError(domains_file, "expected a JSON object domain -> [intents]")
        domain_of = {intent: domain for domain, intents in domains.items() for intent in intents}

    cases: list[IntentCase] = []
    seen_intents: set[str] = set()
    for key in keys:
        rows = document[key]
        if not isinstance(rows, list):
            raise DatasetFormatError(json_path, f"key {key!r} must map to a list of [text, intent]")
        for index, row in enumerate(rows):
            if not (isinstance(row, list) and len(row) == 2 and all(isinstance(v, str) for v in row)):
                raise DatasetFormatError(json_path, f"expected [text, intent], got {row!r}", row=f"{key}[{index}]")
            text, intent = row
            out_of_scope = intent == OUT_OF_SCOPE_LABEL
            if not out_of_scope:
                if domain_of and intent not in domain_of:
                    raise DatasetFormatError(
                        json_path, f"intent {intent!r} is not in {domains_file.name}", row=f"{key}[{index}]"
                    )
                seen_intents.add(intent)
            metadata: dict[str, object] = {"split": key, "row": index}
            if domain_of:
                metadata["domain"] = domain_of.get(intent)
            cases.append(
                IntentCase(
                    id=f"clinc150-{key}-{index:05d}",
                    inputs=IntentInputs(text=text),
                    expected=IntentExpected(label=intent, out_of_scope=out_of_scope),
                    metadata=metadata,
                )
            )
    in_scope: Sequence[str] = sorted(domain_of) if domain_of else sorted(seen_intents)
    dataset = IntentDataset(
        name="clinc150",
        cases=cases,
        source=DatasetSource(path=str(json_path), format="clinc150-json"),
        metadata={"labels": [*in_scope, OUT_OF_SCOPE_LABEL], "split": split, "keys": keys},
    )
    return dataset.sample(limit, seed, stratify=by_label)
