"""Internal (the public surface is `tierflow.evaluate`).

Benchmarks that print figures (latency, throughput, memory); they are not tests.

* `python -m tierflow.evals.bench.embedded`: the embedded GGUF models in-process, and the same
  structured call over HTTP through llama_cpp.server.
"""

from __future__ import annotations

__all__: list[str] = []
