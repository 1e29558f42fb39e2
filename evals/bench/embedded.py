"""Benchmark the embedded tiers: `python -m tierflow.evals.bench.embedded [--runs 20] [--out FILE]`.

Figures, printed as a table (and written as JSON with `--out`):

* model load time of the three embedded models (median of 3 fresh loads, warm page cache);
* decode speed (tokens/s after the first token) of each on free text;
* latency p50/p95 of the `slm` tier classifying a ~60-token support ticket into a
  JSON-schema label, through `TierRegistry.call` (what an agent step pays), and the same
  call made straight through llama-cpp-python on the same engine and thread, with the chat
  the tier sends and with the bare chat: the ratios are tierflow's per-call overhead;
* slm and frontier calls from 4 threads at once, queued on the process's one inference
  thread versus run from the calling threads (the OpenMP contention it removes);
* the same structured call through `python -m llama_cpp.server` over HTTP (the `openai`
  provider, `function_calling`), and its latency ratio to the in-process call;
* peak RSS of this process (both models loaded) and of the server process;
* the machine's load average, since other work on the cores skews every figure.

Each classification names a different ticket id, so llama.cpp cannot reuse the whole
prompt from its cache (a shared system prompt is still reused, as a server would).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import httpx
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from tierflow.model_tiers import ROLES, TierConfig, TierflowError, TierRegistry, config_from_mapping
from tierflow.model_tiers.providers.embedded import EmbeddedEngine, get_engine, resolve_model_path, run_inference

__all__ = ["BenchError", "BenchReport", "ModelFigures", "run_benchmark", "main"]

SLM = "smollm2-135m-instruct"
FRONTIER = "qwen2.5-coder-1.5b-instruct"
MODELS = (SLM, "gemma3-270m", FRONTIER)
N_CTX = 2048
LOAD_REPEATS = 3
DECODE_REPEATS = 3
DECODE_TOKENS = 96
SERVER_DEADLINE_S = 180.0

SYSTEM = "You triage customer support tickets. Pick the one label that fits the ticket best."
# About 60 tokens with SmolLM2's tokenizer; {ticket_id} changes on every run.
TICKET = (
    "Ticket {ticket_id}: Hi, I topped up my account with my debit card yesterday and the money "
    "left my bank, but my balance here still shows the old amount. I need those funds today to "
    "pay rent. Can you check what happened and tell me when it will arrive?"
)


class BenchError(TierflowError):
    """The benchmark could not run (a server did not start, a call failed)."""


class TicketLabel(BaseModel):
    label: Literal["top_up", "card_payment", "transfer", "account", "other"]


class ModelFigures(BaseModel):
    model: str
    load_s: float
    decode_tokens_per_s: float


class BenchReport(BaseModel):
    runs: int
    threads: int
    ticket_tokens: int
    models: list[ModelFigures]
    inproc_p50_s: float
    inproc_p95_s: float
    inproc_input_tokens: int
    http_runs: int
    http_p50_s: float | None = None
    http_p95_s: float | None = None
    http_input_tokens: int | None = None
    http_over_inproc_p50: float | None = None
    # The tier call against llama.cpp's own create_chat_completion on the same engine,
    # thread and grammar: given the prompt the tier sends, and given the bare prompt.
    raw_same_prompt_p50_s: float
    raw_bare_prompt_p50_s: float
    tier_over_raw_same_prompt: float
    tier_over_raw_bare_prompt: float
    # slm and frontier calls from 4 threads at once: wall time of the batch and p95 of one
    # call, through the process's one inference thread vs from the callers' own threads.
    contention: dict[str, dict[str, float]] = {}
    peak_rss_mib: float
    server_peak_rss_mib: float | None = None
    # Other work on the machine skews every figure: the 1-minute load average before / after.
    load_average_before: float
    load_average_after: float | None = None


def _percentiles(samples: Sequence[float]) -> tuple[float, float]:
    p50 = statistics.median(samples)
    p95 = statistics.quantiles(samples, n=100, method="inclusive")[94] if len(samples) > 1 else samples[0]
    return p50, p95


def _peak_rss_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def _server_peak_rss_mib(pid: int) -> float | None:
    """VmHWM of a running process (Linux). RUSAGE_CHILDREN would count the parent's pages
    the child had before exec."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return None


def _load_seconds(model: str, threads: int) -> float:
    times = []
    for _ in range(LOAD_REPEATS):
        engine = EmbeddedEngine(model, n_ctx=N_CTX, n_threads=threads)
        times.append(engine.load_seconds)
        engine.close()
    return statistics.median(times)


def _decode_tokens_per_s(model: str, threads: int) -> float:
    """Generation speed after the first token (prompt evaluation excluded)."""
    engine = EmbeddedEngine(model, n_ctx=N_CTX, n_threads=threads)
    rates = []
    try:
        for i in range(DECODE_REPEATS):
            first: list[float] = []

            # `first` is bound now: the engine calls this during this iteration's chat only.
            def note_first_text(_delta: str, first: list[float] = first) -> None:
                if not first:
                    first.append(time.perf_counter())

            completion = engine.chat(
                [{"role": "user", "content": f"Write a long, detailed story about parcel number {i}."}],
                max_tokens=DECODE_TOKENS,
                on_text=note_first_text,
            )
            ended = time.perf_counter()
            tokens = int(completion["usage"]["completion_tokens"])
            if tokens < 2 or not first:
                raise BenchError(f"{model} produced {tokens} tokens; cannot time decoding")
            rates.append((tokens - 1) / (ended - first[0]))
    finally:
        engine.close()
    return statistics.median(rates)


def _config(tier: dict[str, Any]) -> TierConfig:
    return config_from_mapping({"tiers": [tier], "roles": {r: tier["name"] for r in ROLES}}, source="benchmark")


def _classify_latencies(registry: TierRegistry, runs: int) -> tuple[list[float], int]:
    """Latencies of `runs` structured calls (after one warm-up), and the input tokens of one."""
    def call(i: int) -> tuple[float, int]:
        messages = [SystemMessage(SYSTEM), HumanMessage(TICKET.format(ticket_id=f"T-{1000 + i}"))]
        reply = registry.call("bench", messages, schema=TicketLabel)
        return reply.usage.latency_s, reply.usage.input_tokens

    call(-1)
    results = [call(i) for i in range(runs)]
    return [latency for latency, _ in results], results[0][1]


def _raw_latencies(registry: TierRegistry, runs: int) -> tuple[list[float], list[float]]:
    """The same classification straight through llama-cpp-python (no LangChain, no ledger):
    with the exact chat the tier sends (tool prompt included), and with the bare chat."""
    from langchain_core.utils.function_calling import convert_to_openai_tool

    from tierflow.model_tiers.providers.embedded import _grammar, _to_chat_dicts, tool_call_schema, tools_prompt

    spec = registry.spec("bench")
    engine = get_engine(spec.model, n_ctx=int(spec.options.get("n_ctx", N_CTX)), n_threads=spec.options.get("n_threads"))
    tool = convert_to_openai_tool(TicketLabel)
    name = tool["function"]["name"]
    schema = tool_call_schema([tool], name, False)
    grammar = _grammar(json.dumps(schema, sort_keys=True))

    def timed(chat: list[dict[str, str]]) -> float:
        started = time.perf_counter()
        run_inference(
            lambda: engine._llama.create_chat_completion(messages=chat, grammar=grammar, max_tokens=spec.max_output_tokens, temperature=0.0)
        )
        return time.perf_counter() - started

    same, bare = [], []
    for i in range(runs):
        plain = _to_chat_dicts([SystemMessage(SYSTEM), HumanMessage(TICKET.format(ticket_id=f"T-{1000 + i}"))])
        same.append(timed([{"role": "system", "content": tools_prompt([tool], name, False)}, *plain]))
        bare.append(timed(plain))
    return same, bare


def _contention(threads: int, calls: int = 4) -> dict[str, dict[str, float]]:
    """slm and frontier calls from 4 threads at once, queued on the inference thread versus
    run from the calling threads (two models decoding at once, each with its own lock)."""
    from concurrent.futures import ThreadPoolExecutor

    engines = [get_engine(m, n_ctx=N_CTX, n_threads=threads) for m in (SLM, FRONTIER)]
    chat = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TICKET}]
    out: dict[str, dict[str, float]] = {}
    for mode in ("inference thread", "caller threads"):
        latencies: list[float] = []

        # The mode and the list are bound now: the pool runs these calls inside this iteration.
        def one(i: int, mode: str = mode, latencies: list[float] = latencies) -> None:
            engine = engines[i % 2]
            messages = [chat[0], {"role": "user", "content": TICKET.format(ticket_id=f"C-{mode[0]}{i}")}]
            started = time.perf_counter()
            if mode == "inference thread":
                engine.chat(messages, max_tokens=24)
            else:
                with engine._lock:
                    engine._llama.create_chat_completion(messages=messages, max_tokens=24)
            latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(one, range(calls * 2)))
        _, p95 = _percentiles(latencies)
        out[mode] = {"wall_s": time.perf_counter() - started, "p95_call_s": p95}
    return out


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _llama_cpp_server(gguf: Path, threads: int) -> Iterator[tuple[str, int]]:
    """Run llama_cpp.server on a free loopback port; yield (OpenAI base URL, pid); always stop it."""
    port = _free_port()
    log_path = Path(tempfile.gettempdir()) / f"tierflow-bench-llama-server-{port}.log"
    argv = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2",
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(N_CTX), "--n_threads", str(threads),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + SERVER_DEADLINE_S
        while True:
            if process.poll() is not None:
                raise BenchError(f"llama_cpp.server exited with code {process.returncode}; see {log_path}")
            try:
                if httpx.get(f"{base}/models", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass  # not listening yet: keep polling until the deadline
            if time.monotonic() > deadline:
                raise BenchError(f"llama_cpp.server not ready after {SERVER_DEADLINE_S:g}s; see {log_path}")
            time.sleep(0.2)
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def run_benchmark(runs: int = 20, http_runs: int = 10, threads: int | None = None) -> BenchReport:
    threads = threads or max(1, os.cpu_count() or 1)
    load_before = os.getloadavg()[0]
    models = [
        ModelFigures(model=m, load_s=_load_seconds(m, threads), decode_tokens_per_s=_decode_tokens_per_s(m, threads))
        for m in MODELS
    ]
    slm_tier = {
        "name": "bench", "provider": "embedded", "model": SLM, "max_output_tokens": 32,
        "options": {"n_ctx": N_CTX, "n_threads": threads},
    }
    slm_registry = TierRegistry(_config(slm_tier))
    inproc, inproc_tokens = _classify_latencies(slm_registry, runs)
    raw_same, raw_bare = _raw_latencies(slm_registry, runs)
    probe = EmbeddedEngine(SLM, n_ctx=256, n_threads=threads)
    ticket_tokens = probe.count_tokens(TICKET.format(ticket_id="T-1000"))
    probe.close()
    inproc_p50, inproc_p95 = _percentiles(inproc)
    report = BenchReport(
        runs=runs, threads=threads, ticket_tokens=ticket_tokens, models=models,
        inproc_p50_s=inproc_p50, inproc_p95_s=inproc_p95, inproc_input_tokens=inproc_tokens,
        raw_same_prompt_p50_s=statistics.median(raw_same), raw_bare_prompt_p50_s=statistics.median(raw_bare),
        tier_over_raw_same_prompt=inproc_p50 / statistics.median(raw_same),
        tier_over_raw_bare_prompt=inproc_p50 / statistics.median(raw_bare),
        contention=_contention(threads),
        http_runs=http_runs, peak_rss_mib=_peak_rss_mib(resource.RUSAGE_SELF),
        load_average_before=load_before,
    )
    if http_runs <= 0:
        return report.model_copy(update={"load_average_after": os.getloadavg()[0]})
    gguf, _, _ = resolve_model_path(SLM)
    with _llama_cpp_server(gguf, threads) as (base_url, server_pid):
        http_tier = {
            "name": "bench", "provider": "openai", "model": "smollm2", "base_url": base_url,
            "api_key_env": "", "max_output_tokens": 32, "timeout_s": 300,
            "capabilities": {"structured_output": "function_calling"},
        }
        http, http_tokens = _classify_latencies(TierRegistry(_config(http_tier)), http_runs)
        server_rss = _server_peak_rss_mib(server_pid)
    http_p50, http_p95 = _percentiles(http)
    return report.model_copy(
        update={
            "http_p50_s": http_p50, "http_p95_s": http_p95, "http_input_tokens": http_tokens,
            "http_over_inproc_p50": http_p50 / inproc_p50,
            "server_peak_rss_mib": server_rss,
            "load_average_after": os.getloadavg()[0],
        }
    )


def _table(report: BenchReport) -> Table:
    table = Table(title=f"Embedded tiers benchmark ({report.threads} llama.cpp threads)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for m in report.models:
        table.add_row(f"{m.model} load (median of {LOAD_REPEATS})", f"{m.load_s:.2f} s")
        table.add_row(f"{m.model} decode", f"{m.decode_tokens_per_s:.1f} tok/s")
    table.add_row(f"ticket ({report.ticket_tokens} tokens) -> label", "p50 / p95")
    table.add_row(
        f"  in-process, {report.runs} runs, {report.inproc_input_tokens} tok in",
        f"{report.inproc_p50_s:.3f} / {report.inproc_p95_s:.3f} s",
    )
    if report.http_p50_s is not None and report.http_p95_s is not None:
        table.add_row(
            f"  llama_cpp.server, {report.http_runs} runs, {report.http_input_tokens} tok in",
            f"{report.http_p50_s:.3f} / {report.http_p95_s:.3f} s",
        )
        table.add_row("  HTTP / in-process (p50)", f"{report.http_over_inproc_p50:.2f}x")
    table.add_row("  llama.cpp direct, same prompt as the tier (p50)", f"{report.raw_same_prompt_p50_s:.3f} s")
    table.add_row("  llama.cpp direct, bare prompt (p50)", f"{report.raw_bare_prompt_p50_s:.3f} s")
    table.add_row("  tier call / direct, same prompt", f"{report.tier_over_raw_same_prompt:.2f}x")
    table.add_row("  tier call / direct, bare prompt", f"{report.tier_over_raw_bare_prompt:.2f}x")
    for mode, fig in report.contention.items():
        table.add_row(f"slm+frontier from 4 threads, {mode}", f"wall {fig['wall_s']:.2f} s, p95 call {fig['p95_call_s']:.2f} s")
    table.add_row("peak RSS, this process", f"{report.peak_rss_mib:.0f} MiB")
    if report.server_peak_rss_mib is not None:
        table.add_row("peak RSS, llama_cpp.server", f"{report.server_peak_rss_mib:.0f} MiB")
    after = "" if report.load_average_after is None else f" / {report.load_average_after:.1f}"
    table.add_row("load average (1 min) before / after", f"{report.load_average_before:.1f}{after}")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tierflow.evals.bench.embedded", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="in-process classification runs (default 20)")
    parser.add_argument("--http-runs", type=int, default=10, help="runs over HTTP; 0 skips the server (default 10)")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: all CPUs)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    console = Console()
    try:
        report = run_benchmark(runs=args.runs, http_runs=args.http_runs, threads=args.threads)
    except TierflowError as err:
        Console(stderr=True).print(f"[red]error:[/red] {err}", highlight=False)
        return 2
    console.print(_table(report))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report.model_dump(), indent=2) + "\n", encoding="utf-8")
        console.print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    from tierflow.cli.guard import guard

    sys.exit(guard("python -m tierflow.evals.bench.embedded", main))
