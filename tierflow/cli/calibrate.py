"""`tierflow calibrate RUN_DIR --target 0.95 [--of all-frontier]`.

    tierflow eval math_qa --tiers tiers/replay_gsm8k.toml --policy all-slm all-frontier --out runs/gsm8k
    tierflow calibrate runs/gsm8k --target 0.95 --out calibration/math_qa.json

then name the artifact in the tiers file (``[escalation] calibration = "..."``): the tiered
policy escalates each calibrated step's answer below its threshold, and starts the inputs
its router expects the slm to fail one tier up.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from tierflow.model_tiers import ConfigError

__all__ = ["register"]

console = Console(soft_wrap=True)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def _holdout(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 0.9:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 0.9)")
    return value


def _calibrate(args: argparse.Namespace) -> int:
    from tierflow.evals.calibrate.command import CalibrateOptions, calibrate_run
    from tierflow.evals.calibrate.fit import FitSettings
    from tierflow.evals.calibrate.report import summary_lines, write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "run.json").is_file():
        raise ConfigError(f"{run_dir} is not an eval run folder (no run.json); pass the --out folder of `tierflow eval`")
    options = CalibrateOptions(
        target=args.target,
        reference=args.of,
        cheap_policy=args.cheap_policy,
        holdout=args.holdout,
        min_cases=args.min_cases,
        router=not args.no_router,
        strict=args.strict,
        fit=FitSettings(seed=args.seed, embedding=not args.no_embedding),
    )
    run = calibrate_run(run_dir, options)
    for line in summary_lines(run):
        console.print(line, highlight=False, markup=False)
    out = Path(args.out) if args.out else run_dir / "calibration.json"
    report_dir = Path(args.report) if args.report else out.with_suffix("").parent / f"{out.stem}_report"
    paths = write_report(run, report_dir)
    if not run.artifact.steps:
        console.print("nothing calibrated: no artifact written (see the reasons above)", highlight=False)
        console.print(f"  report: {paths[1]}", highlight=False)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(run.artifact.model_dump_json(), encoding="utf-8")
    console.print(f"artifact {run.artifact.version}: {out}", highlight=False)
    console.print(f"  use it: in the tiers file, [escalation] calibration = \"{out.resolve()}\"", highlight=False, markup=False)
    for path in paths:
        console.print(f"  report: {path}", highlight=False)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("calibrate", help="learn from an eval run when each step's slm answer can be trusted, at a target quality")
    p.add_argument("run_dir", help="the --out folder of a `tierflow eval` run with a cheap policy (tiered or all-slm) and the reference")
    p.add_argument("--target", type=_fraction, default=0.95, help="quality to keep, as a share of the reference policy's (default 0.95)")
    p.add_argument("--of", default="all-frontier", metavar="POLICY", help="the reference policy (default all-frontier)")
    p.add_argument("--cheap-policy", help="where the slm answers come from (default: tiered if the run has it, else all-slm)")
    p.add_argument(
        "--holdout", type=_holdout, default=0.0, help="share of cases kept out of the fit, to report the artifact on (default 0)"
    )
    p.add_argument("--min-cases", type=int, default=40, help="fewest answers a model is fitted on (default 40)")
    p.add_argument("--no-router", action="store_true", help="fit no router (only the calibrated check)")
    p.add_argument(
        "--strict", action="store_true",
        help="also meet the target on the observed outcomes, not only in expectation (a margin, at a cost)",
    )
    p.add_argument("--no-embedding", action="store_true", help="hashed words only: no wordllama sentence embedding of the input")
    p.add_argument("--seed", type=int, default=0, help="folds, bootstrap and holdout seed (default 0)")
    p.add_argument("--out", help="artifact path (default RUN_DIR/calibration.json)")
    p.add_argument("--report", help="report folder (default: next to the artifact, <name>_report/)")
    p.set_defaults(handler=_calibrate)
