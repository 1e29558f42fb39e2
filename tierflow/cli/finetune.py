"""`tierflow finetune`: a LoRA adapter for one step, trained on the CPU, served as a tier.

    # from the steps the slm failed and the top tier passed in an eval run
    tierflow export-finetune runs/b77 --require-correct
    tierflow finetune --data runs/b77/finetune.jsonl --graph ticket_triage --step classify --out ft/classify

    # from a labelled dataset, through the graph's eval suite (the step's real prompt)
    tierflow finetune --graph ticket_triage --step classify --from-dataset --per-label 40 --out ft/classify

The output folder's `tier.toml` holds the tier entry to add; see model_tiers/finetune/run.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

if TYPE_CHECKING:
    from tierflow.model_tiers.finetune import TrainingExample

__all__ = ["register", "training_examples"]

console = Console(stderr=True)


def training_examples(args: argparse.Namespace) -> tuple[list[TrainingExample], str]:
    """The examples `args` ask for, and a description of where they came from."""
    from tierflow.evals.datasets.intents import by_label
    from tierflow.evals.finetune import step_examples, step_of, stratified_split
    from tierflow.evals.suites import get_suite
    from tierflow.model_tiers.finetune import TrainingDataError, load_training_file

    if args.data is not None:
        if args.graph is not None:
            step_of(args.graph, args.step)  # a step the graph does not have is an error, before anything is read
        return load_training_file(args.data, step=args.step), f"file {args.data}"
    if args.from_dataset is None or args.graph is None or args.step is None:
        raise TrainingDataError("give --data FILE, or --graph, --step and --from-dataset to build examples from the graph's eval dataset")
    dataset_path = None if args.from_dataset in (None, "default") else args.from_dataset
    suite = get_suite(args.graph, args.suite, dataset_path)
    dataset = suite.load(Path(dataset_path) if dataset_path else None, None, args.seed)
    if args.per_label is not None:
        cases = dataset.cases
        if not cases or not hasattr(cases[0].expected, "label"):
            raise TrainingDataError(f"--per-label needs a labelled dataset; suite '{suite.name}' has none (use --limit)")
        _, chosen = stratified_split(cases, by_label, (args.holdout_per_label, args.per_label), args.seed)
        what = f"{args.per_label} per label after {args.holdout_per_label} held out per label"
    else:
        chosen = dataset.sample(args.limit, args.seed).cases if args.limit else dataset.cases
        what = f"{len(chosen)} cases"
    built = step_examples(suite, args.step, chosen, prompt=args.prompt)
    if built.skipped:
        case_id, why = built.skipped[0]
        console.print(
            f"left out {len(built.skipped)} case(s) whose answer the step's schema cannot hold (first: {case_id}: {why})", highlight=False
        )
    if not built.examples:
        raise TrainingDataError(f"no usable training examples for step '{args.step}'")
    return built.examples, f"suite {suite.name} ({dataset.source.path}), {what}, seed {args.seed}"


def _finetune(args: argparse.Namespace) -> int:
    from tierflow.model_tiers.config import load_tier_config
    from tierflow.model_tiers.finetune import LoraSettings, finetune

    config = load_tier_config(args.tiers)
    base = config.tier(args.tier) if args.tier in config.names else None
    if base is None:
        from tierflow.model_tiers.errors import ConfigError

        raise ConfigError(f"unknown tier '{args.tier}'; the ladder has: {', '.join(config.names)}")
    examples, source = training_examples(args)
    settings = LoraSettings(
        rank=args.rank, alpha=args.alpha, learning_rate=args.lr, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed
    )
    name = args.name or f"{base.name}-{args.step or 'ft'}"
    out = Path(args.out) if args.out else Path("finetuned") / name
    console.print(f"fine-tuning {base.model} (tier '{base.name}') on {len(examples)} examples from {source} -> {out}", highlight=False)
    with Progress(
        TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(), TimeRemainingColumn(), console=console, disable=args.no_progress,
    ) as progress:
        task = progress.add_task("train", total=None, loss="-")

        def on_step(step: int, total: int, loss: float) -> None:
            progress.update(task, completed=step, total=total, loss=f"{loss:.3f}")

        result = finetune(examples, base, out, tier_name=name, settings=settings, restart=args.restart, source=source, on_step=on_step)
    resumed = f" (resumed at step {result.resumed_from})" if result.resumed_from else ""
    print(
        f"trained {result.steps} steps{resumed} in {result.seconds:.0f} s; loss {result.first_loss:.3f} -> {result.last_loss:.3f}\n"
        f"adapter: {result.adapter}\nadd the tier from {out / 'tier.toml'} to your tiers.toml"
    )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    f = subparsers.add_parser("finetune", help="train a LoRA adapter for one step on the CPU; writes a tier to serve it")
    src = f.add_argument_group("training data (one of)")
    src.add_argument("--data", metavar="FILE", help="chat JSONL (as `tierflow export-finetune` writes)")
    src.add_argument(
        "--from-dataset", nargs="?", const="default", metavar="FILE",
        help="build examples from the graph's eval dataset (its default file, or FILE): the step's prompt, the gold answer",
    )
    f.add_argument("--graph", help="the graph whose step is trained (required with --from-dataset)")
    f.add_argument("--step", help="the step to train (its examples only; required with --from-dataset)")
    f.add_argument("--suite", help="the graph's suite (default: picked from the dataset)")
    f.add_argument("--per-label", type=int, help="stratified: N examples per label (labelled datasets)")
    f.add_argument(
        "--holdout-per-label", type=int, default=10, help="with --per-label: first N per label left out, for evaluation (default 10)"
    )
    f.add_argument("--limit", type=int, help="a sample of N cases (default: all)")
    f.add_argument(
        "--prompt", choices=["compact", "full"], default="compact",
        help="with --from-dataset: train on the step's compact prompt (the tier gets prompt = \"compact\") or its full one",
    )
    f.add_argument("--tier", default="slm", help="the embedded tier whose model is fine-tuned (default slm)")
    f.add_argument("--name", help="name of the new tier (default: <tier>-<step>)")
    f.add_argument("--out", help="output folder (default: finetuned/<name>); a rerun resumes an interrupted run there")
    f.add_argument("--epochs", type=float, default=1.0)
    f.add_argument("--rank", type=int, default=16)
    f.add_argument("--alpha", type=float, default=32.0)
    f.add_argument("--lr", type=float, default=1e-3)
    f.add_argument("--batch-size", type=int, default=16)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--restart", action="store_true", help="discard an interrupted run's checkpoint in --out")
    f.add_argument("--no-progress", action="store_true")
    f.add_argument("--tiers", metavar="FILE", default=argparse.SUPPRESS, help="tiers file (same as tierflow --tiers)")
    f.set_defaults(handler=_finetune)

