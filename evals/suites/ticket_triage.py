"""ticket_triage suites: Banking77 (intent accuracy, macro-F1) and CLINC150 (out-of-scope
detection for a bank's inbox).

ticket_triage labels a message with one of the 77 Banking77 intents or "other" (not a
banking request), then extracts entities, retrieves policy snippets, drafts and files a
ticket. What the datasets can grade is the label:

* **banking77**: the classify step's final label against the gold intent (accuracy, with
  a Wilson interval) and macro-F1 over the sampled cases (bootstrap interval). A case whose
  label was left to a human (every tier failed the verifier) has no label and counts as
  wrong. Verifier ground truth: a classify candidate is right iff its label is the gold one.
* **clinc150**: CLINC150's intents are not Banking77's, so label accuracy would need a
  hand-made mapping between two label sets; this suite does not pretend to have one. It
  measures what the graph must get right on foreign traffic: a balanced set of CLINC150
  out-of-scope queries (``oos_val``) and in-scope queries of CLINC150's banking and
  credit-card domains (``val``, stratified over their 30 intents). An out-of-scope query
  must end as "other" or be handed to a human at the classify step; an in-scope banking
  query must get a banking intent (which one is not graded). Verifier ground truth: a
  classify candidate is right iff (label == "other") matches the query's scope.

Both suites run the graph on a helpdesk file inside the run folder (never the production
helpdesk) and the shared policy knowledge base under $TIERFLOW_HOME.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierflow.evals.datasets import Case, default_dataset_file
from tierflow.evals.datasets.intents import IntentCase, IntentDataset, by_label, load_banking77, load_clinc150
from tierflow.evals.evaluators.base import EvaluationResult, verdict
from tierflow.evals.evaluators.labels import ExactLabel
from tierflow.evals.harness.stats import macro_f1_score
from tierflow.evals.harness.suite import Aggregate, GraphOutcome, StepTruth, Suite, on_output_field
from tierflow.graphs.ticket_triage import OUT_OF_SCOPE
from tierflow.model_tiers import ConfigError
from tierflow.tools.helpdesk import Helpdesk
from tierflow.tools.knowledge_base import KnowledgeBase

__all__ = ["SUITES", "BANKING77", "CLINC150", "triage_output", "routed_away", "CLINC_BANK_DOMAINS"]

CLINC_BANK_DOMAINS = ("banking", "credit_cards")
# Thresholds for `--policy sweep` over the classifier's self-reported confidence.
CONFIDENCE_THRESHOLDS = (0.5, 0.7, 0.9)


def _open_resources(run_dir: Path) -> Mapping[str, Any]:
    kb = KnowledgeBase()
    if kb.count() == 0:
        kb.ingest()
    return {"kb": kb, "helpdesk": Helpdesk(run_dir / "helpdesk.sqlite")}


def _to_input(case: Case[Any, Any]) -> dict[str, Any]:
    return {"request": case.inputs.text}


def triage_output(outcome: GraphOutcome) -> dict[str, Any]:
    """What a ticket_triage run decided: the intent (None when no tier's label passed the
    verifier), who decided it, where the run stopped, the filed ticket and the reply."""
    label = outcome.result_of("classify") or {}
    filed = outcome.result_of("file") or {}
    draft = outcome.result_of("draft") or {}
    return {
        "status": outcome.status,
        "intent": label.get("label"),
        "confidence": label.get("confidence"),
        "intent_decided_by": outcome.decided_by("classify"),
        "stopped_at": outcome.stopped_at,
        "ticket_id": filed.get("ticket_id"),
        "reply": draft.get("reply"),
    }


def routed_away(output: Any) -> bool:
    """True when the graph did not commit to a banking intent: it labelled the message
    "other", or the classify step ended with a human (interrupt) or a typed failure."""
    if not isinstance(output, Mapping):
        return False
    if output.get("intent") == OUT_OF_SCOPE:
        return True
    return output.get("intent") is None and output.get("stopped_at") == "classify" and output.get("status") in ("needs_human", "failed")


# -- banking77 -----------------------------------------------------------------------------


def _load_banking77(path: Path | None, limit: int | None, seed: int) -> IntentDataset:
    return load_banking77(path if path is not None else default_dataset_file("banking77"), limit=limit, seed=seed)


def _label_pairs(items: Sequence[tuple[Case[Any, Any], Any]]) -> list[tuple[str, str | None]]:
    return [(case.expected.label, output.get("intent") if isinstance(output, Mapping) else None) for case, output in items]


def _macro_f1(items: Sequence[tuple[Case[Any, Any], Any]]) -> float:
    return macro_f1_score(_label_pairs(items))


def _label_is_gold(value: Any, case: Case[Any, Any]) -> bool:
    return isinstance(value, Mapping) and value.get("label") == case.expected.label


BANKING77 = Suite(
    name="banking77",
    graph="ticket_triage",
    description=(
        "Banking77 intent classification through the whole ticket_triage graph: the classify step's verified label "
        "against the gold intent (77 intents; the graph may also answer 'other')."
    ),
    dataset="banking77",
    load=_load_banking77,
    to_input=_to_input,
    to_output=triage_output,
    evaluators=(on_output_field(ExactLabel(), "intent", name="exact_label"),),
    aggregates=(
        Aggregate(
            "macro_f1",
            _macro_f1,
            "macro-averaged F1 over the labels present in the sample's gold labels or predictions (no label = a miss)",
        ),
    ),
    primary="exact_label",
    truths=(
        StepTruth(
            "classify",
            _label_is_gold,
            "a classify candidate is right iff its label equals the gold intent",
            answer=lambda case: {"label": case.expected.label, "confidence": 1.0},
        ),
    ),
    thresholds=CONFIDENCE_THRESHOLDS,
    open_resources=_open_resources,
    graded_steps=("classify",),
    metric_notes={"exact_label": "the verified intent equals the gold intent (a label left to a human counts as wrong)"},
    notes=(
        "Sampling with --limit is stratified by gold intent (deterministic, seed 0 unless --seed): small samples cover "
        "many intents with one case each, so macro-F1 on a small sample is noisy; read its interval.",
        "Only the classify step is graded, so each case stops once it has a verified label (extraction, retrieval "
        "and the drafted reply are not run or costed); --whole-graph runs and costs them too.",
    ),
)


# -- clinc150 ------------------------------------------------------------------------------


def _by_scope(case: IntentCase) -> str:
    return "oos" if case.expected.out_of_scope else "in_scope"


CLINC_SPLITS = ("val", "test", "train")


def _load_clinc150_split(path: Path | None, limit: int | None, seed: int, split: str) -> IntentDataset:
    """A balanced OOS-detection set: all out-of-scope queries of the split, and as many
    in-scope banking / credit-card queries (stratified over their intents)."""
    source = path if path is not None else default_dataset_file("clinc150")
    full = load_clinc150(source, split=split)
    if full.cases and "domain" not in full.cases[0].metadata:
        raise ConfigError(f"the CLINC150 suite needs domains.json next to {source} to pick the banking and credit-card intents")
    oos = [c for c in full.cases if c.expected.out_of_scope]
    banking = full.model_copy(
        update={"cases": [c for c in full.cases if not c.expected.out_of_scope and c.metadata.get("domain") in CLINC_BANK_DOMAINS]}
    )
    in_scope = banking.sample(len(oos), seed, stratify=by_label).cases
    chosen = {c.id for c in oos} | {c.id for c in in_scope}
    balanced = full.model_copy(
        update={
            "name": "clinc150-bank-oos",
            "cases": [c for c in full.cases if c.id in chosen],
            "metadata": {**full.metadata, "domains": list(CLINC_BANK_DOMAINS), "design": "balanced oos vs bank in-scope"},
        }
    )
    return balanced.sample(limit, seed, stratify=_by_scope)


def _load_clinc150(path: Path | None, limit: int | None, seed: int) -> IntentDataset:
    return _load_clinc150_split(path, limit, seed, CLINC_SPLITS[0])


def _scope_correct(output: Any, case: IntentCase) -> EvaluationResult:
    away = routed_away(output)
    intent = output.get("intent") if isinstance(output, Mapping) else None
    if case.expected.out_of_scope:
        return verdict("scope_correct", away, f"out-of-scope query got the banking intent {intent!r}", routed_away=away)
    kept = not away and intent is not None
    return verdict("scope_correct", kept, f"in-scope banking query was not kept (intent {intent!r})", routed_away=away)


def _oos_routed(output: Any, case: IntentCase) -> EvaluationResult:
    if not case.expected.out_of_scope:
        return EvaluationResult(name="oos_routed", score=0.0, passed=None, reason="in-scope case")
    return _scope_correct(output, case).model_copy(update={"name": "oos_routed"})


def _in_scope_kept(output: Any, case: IntentCase) -> EvaluationResult:
    if case.expected.out_of_scope:
        return EvaluationResult(name="in_scope_kept", score=0.0, passed=None, reason="out-of-scope case")
    return _scope_correct(output, case).model_copy(update={"name": "in_scope_kept"})


@dataclass(frozen=True)
class _Named:
    name: str
    fn: Callable[[Any, Any], EvaluationResult]

    def evaluate(self, output: Any, case: Any) -> EvaluationResult:
        return self.fn(output, case)


def _balanced_accuracy(items: Sequence[tuple[Case[Any, Any], Any]]) -> float:
    rates = []
    for want_oos in (True, False):
        group = [(c, o) for c, o in items if c.expected.out_of_scope is want_oos]
        if group:
            rates.append(sum(1 for c, o in group if _scope_correct(o, c).passed) / len(group))
    return sum(rates) / len(rates) if rates else 0.0


def _scope_truth(value: Any, case: Case[Any, Any]) -> bool:
    label = value.get("label") if isinstance(value, Mapping) else None
    if label is None:
        return False
    return (label == OUT_OF_SCOPE) is case.expected.out_of_scope


CLINC150 = Suite(
    name="clinc150",
    graph="ticket_triage",
    description=(
        "Out-of-scope detection on CLINC150 (validation split unless --split names another): a balanced set of out-of-scope "
        "queries and in-scope queries of the banking and credit-card domains. Out-of-scope must end as 'other' or with a human at the "
        "classify step; in-scope must get a banking intent. Intent accuracy is NOT measured (CLINC150's labels are "
        "not Banking77's)."
    ),
    dataset="clinc150",
    load=_load_clinc150,
    splits=CLINC_SPLITS,
    load_split=_load_clinc150_split,
    to_input=_to_input,
    to_output=triage_output,
    evaluators=(_Named("scope_correct", _scope_correct), _Named("oos_routed", _oos_routed), _Named("in_scope_kept", _in_scope_kept)),
    aggregates=(Aggregate("balanced_accuracy", _balanced_accuracy, "mean of the out-of-scope routing rate and the in-scope keep rate"),),
    primary="balanced_accuracy",
    truths=(StepTruth("classify", _scope_truth, "a classify candidate is right iff (label == 'other') matches the query's scope"),),
    thresholds=CONFIDENCE_THRESHOLDS,
    open_resources=_open_resources,
    graded_steps=("classify",),
    metric_notes={
        "scope_correct": "out-of-scope routed away, or in-scope given a banking intent (all cases)",
        "oos_routed": "share of out-of-scope queries labelled 'other' or handed to a human at classify (recall of OOS)",
        "in_scope_kept": "share of in-scope banking queries given a banking intent (1 - false rejections)",
    },
    notes=(
        "Which banking intent an in-scope query gets is not graded: there is no honest mapping from CLINC150's 30 "
        "banking/credit-card intents to Banking77's 77 without hand labelling.",
        "Queries of CLINC150's other domains (travel, kitchen, ...) are out of scope for a bank too, but are left out "
        "so the out-of-scope class is exactly CLINC150's own oos annotation.",
    ),
)

SUITES: tuple[Suite, ...] = (BANKING77, CLINC150)
