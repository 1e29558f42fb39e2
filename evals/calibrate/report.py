"""What `tierflow calibrate` shows: per step, the cost/quality curve with the chosen point,
the reliability diagram, and the figures with their bootstrap intervals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tierflow.evals.calibrate.command import CalibrationRun, StepResult

__all__ = ["write_report", "summary_lines"]


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def _interval(values: list[float] | None) -> str:
    return f"[{100 * values[0]:.1f}%, {100 * values[1]:.1f}%]" if values else "-"


def summary_lines(run: CalibrationRun) -> list[str]:
    """The lines the command prints: per step, what was chosen and what it is expected to give."""
    artifact = run.artifact
    lines = [f"calibration {artifact.version} of '{artifact.graph}': target {artifact.target:.0%} of '{artifact.reference}' quality"]
    for result in run.steps:
        head = f"  {result.step} ({result.tier})"
        chosen = result.figures.get("chosen")
        if chosen is None:
            lines.append(f"{head}: {result.message}")
            continue
        interval = result.figures.get("interval_95", {})
        parts = [
            f"escalate below p(right) {chosen['escalate_below']:.3f}" if chosen["escalate_below"] else "no calibrated check",
            f"skip above p(fail) {chosen['skip_above']:.3f}" if chosen["skip_above"] is not None else "no router",
        ]
        lines.append(
            f"{head}: {', '.join(parts)}; quality {_pct(chosen['quality_ratio'])} of reference {_interval(interval.get('quality_ratio'))} "
            f"(expected {_pct(chosen.get('expected_quality_ratio'))}), "
            f"cost saved {_pct(chosen['cost_saved'])} {_interval(interval.get('cost_saved'))}, "
            f"escalated {_pct(chosen['escalated'])}, routed {_pct(chosen['routed'])} (out of fold, {result.figures['cases']} cases)"
        )
        baseline = result.figures.get("baseline")
        if baseline:
            lines.append(
                f"    without calibration (checks only): quality {_pct(baseline['quality_ratio'])}, "
                f"cost saved {_pct(baseline['cost_saved'])}"
            )
        eces = [
            f"{name} ECE {result.figures[key]:.3f}"
            for name, key in (("check", "check_ece"), ("router", "router_ece"))
            if result.figures.get(key) is not None
        ]
        if eces:
            lines.append(f"    calibration error (out of fold): {', '.join(eces)}")
        held = result.figures.get("held_out")
        if held:
            extra = ", ".join(f"{k.split('_')[0]} ECE {held[k]:.3f}" for k in ("check_ece", "router_ece") if held.get(k) is not None)
            lines.append(
                f"    held out ({held['cases']} cases, the artifact as served): quality {_pct(held['quality_ratio'])}, "
                f"cost saved {_pct(held['cost_saved'])}" + (f", {extra}" if extra else "")
            )
        if result.message:
            lines.append(f"    note: {result.message}")
    for step, left in run.left_out.items():
        lines.append(f"  {step}: left out " + "; ".join(f"{n} ({why})" for why, n in left.items()))
    return lines


def _plot(result: StepResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for points, label in ((result.check_curve, "calibrated check"), (result.router_curve, "router")):
        if points:
            left.plot([1 - p.cost_saved for p in points], [p.quality_ratio for p in points], ".-", ms=3, label=label)
    if result.baseline is not None:
        left.plot([1 - result.baseline.cost_saved], [result.baseline.quality_ratio], "s", color="gray", label="checks only")
    if result.chosen is not None:
        left.plot([1 - result.chosen.cost_saved], [result.chosen.quality_ratio], "*", ms=14, color="red", label="chosen")
    left.axhline(0.95, color="red", lw=0.6, ls="--")
    left.set_xlabel("cost / reference cost")
    left.set_ylabel("quality / reference quality")
    left.set_title(f"{result.step}: cost against quality (out of fold)")
    left.legend(fontsize=8)
    right.plot([0, 1], [0, 1], color="gray", lw=0.8)
    for bins, label in ((result.reliability, "p(right), check"), (result.router_reliability, "p(fail), router")):
        if bins:
            right.plot([b[0] for b in bins], [b[1] for b in bins], "o-", label=label)
    right.set_xlabel("predicted probability")
    right.set_ylabel("observed frequency")
    right.set_title("reliability diagram (out of fold)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(run: CalibrationRun, folder: Path) -> list[Path]:
    """report.json, report.md and one PNG per calibrated step, under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    steps = {r.step: {"tier": r.tier, "message": r.message, **r.figures} for r in run.steps}
    data = {"artifact": run.artifact.version, "graph": run.artifact.graph, "steps": steps, "left_out": run.left_out}
    (folder / "report.json").write_text(json.dumps(data, indent=2, default=float), encoding="utf-8")
    lines = ["# Calibration report", "", *[f"    {line}" for line in summary_lines(run)], ""]
    for result in run.steps:
        if result.check_curve or result.router_curve:
            png = folder / f"{result.step}.png"
            _plot(result, png)
            written.append(png)
            lines += [f"## {result.step}", "", f"![{result.step}]({png.name})", ""]
    (folder / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return [folder / "report.json", folder / "report.md", *written]
