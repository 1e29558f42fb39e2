"""Real HTTP servers the integration tests start themselves, on free loopback ports.

* `ollama_protocol`: Ollama's HTTP API backed by the embedded llama.cpp engine (no Ollama
  binary can be installed where the tests run).
* `process`: starting a server as a subprocess, waiting until it answers, and always
  stopping it again.
"""

from __future__ import annotations

__all__: list[str] = []
