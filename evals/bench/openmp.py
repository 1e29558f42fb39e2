"""OpenMP wait policy for in-process llama.cpp, quiet and under load:
`python -m tierflow.evals.bench.openmp [--calls 6]`.

Each variant runs in a fresh process (libgomp reads its settings once, when llama.cpp's
library loads): SmolLM2 answers the same short classification `--calls` times through the
embedded engine, and the median call time is printed. "quiet": nothing else runs;
"loaded": a second process decodes with SmolLM2 non-stop under OpenMP's default spinning
(another eval, a server), which is what collapsed calls from 0.4 s to 10-27 s before.
Variants: libgomp's default (GOMP_SPINCOUNT=300000), tierflow's default (10000), a
lower one, and OMP_WAIT_POLICY=passive.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

__all__ = ["main", "VARIANTS"]

VARIANTS: dict[str, dict[str, str]] = {
    "libgomp default (spin 300000)": {"GOMP_SPINCOUNT": "300000"},
    "tierflow default (spin 10000)": {"GOMP_SPINCOUNT": "10000"},
    "spin 1000": {"GOMP_SPINCOUNT": "1000"},
    "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
}

_WORKER = """
import json, sys, time
from tierflow.model_tiers.providers.embedded import get_engine
engine = get_engine("smollm2-135m-instruct", n_ctx=1024)
times = []
for i in range(int(sys.argv[1])):
    messages = [{"role": "system", "content": "Classify the support ticket in one word."},
                {"role": "user", "content": f"Ticket {i}: I topped up with my card yesterday and my balance still shows the old amount."}]
    started = time.perf_counter()
    engine.chat(messages, max_tokens=16)
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""

_LOAD = """
from tierflow.model_tiers.providers.embedded import get_engine
engine = get_engine("smollm2-135m-instruct", n_ctx=1024)
while True:
    engine.chat([{"role": "user", "content": "Write a long story about a harbour."}], max_tokens=64)
"""


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    return {**env, **extra}


def _measure(extra: dict[str, str], calls: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _WORKER, str(calls)], env=_env(extra), capture_output=True, text=True, timeout=600, check=True
    )
    times: list[float] = json.loads(out.stdout.strip().splitlines()[-1])
    return statistics.median(times[1:] if len(times) > 1 else times)  # the first call warms the cache


def run(calls: int) -> dict[str, dict[str, float]]:
    figures: dict[str, dict[str, float]] = {name: {} for name in VARIANTS}
    for name, extra in VARIANTS.items():
        figures[name]["quiet"] = _measure(extra, calls)
    load = subprocess.Popen([sys.executable, "-c", _LOAD], env=_env({"GOMP_SPINCOUNT": "300000"}),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3.0)  # let the competitor load and start decoding
        for name, extra in VARIANTS.items():
            figures[name]["loaded"] = _measure(extra, calls)
    finally:
        load.kill()
        load.wait(timeout=30)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tierflow.evals.bench.openmp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=6, help="calls per variant and condition (default 6)")
    args = parser.parse_args(argv)
    figures = run(max(2, args.calls))
    base = figures["tierflow default (spin 10000)"]
    table = Table(title="SmolLM2 classify call, median seconds (ratio to tierflow's default)")
    for col in ("variant", "quiet", "loaded"):
        table.add_column(col, justify="right")
    for name, fig in figures.items():
        table.add_row(name, *(f"{fig[c]:.3f} ({fig[c] / base[c]:.2f}x)" for c in ("quiet", "loaded")))
    Console().print(table)
    return 0


if __name__ == "__main__":
    from tierflow.cli.guard import guard

    sys.exit(guard("python -m tierflow.evals.bench.openmp", main))
