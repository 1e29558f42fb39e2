"""Session-scoped real servers for the integration tests, and small tier-config helpers.

Servers run as subprocesses on free loopback ports, log into pytest's tmp dir (outside the
repository) and are stopped at the end of the session whatever the tests did. Test tiers
use small `max_output_tokens`: the machine has two shared cores.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.servers.process import LOOPBACK, ServerProcess, free_port, running_server
from tierflow.model_tiers import ROLES, TierConfig, config_from_mapping
from tierflow.model_tiers.providers.embedded import resolve_model_path

REPO_ROOT = Path(__file__).resolve().parents[2]

# The name the Ollama-protocol server gives SmolLM2, as an Ollama user would pull it.
OLLAMA_MODEL = "smollm2:135m"
SERVER_N_CTX = 2048
SERVER_START_DEADLINE_S = 180.0


class TierConfigFactory(Protocol):
    def __call__(self, *tiers: Mapping[str, Any]) -> TierConfig: ...


def _tier_config(*tiers: Mapping[str, Any]) -> TierConfig:
    return config_from_mapping(
        {"tiers": [dict(t) for t in tiers], "roles": {role: tiers[0]["name"] for role in ROLES}},
        source="integration test",
    )


@pytest.fixture(scope="session")
def make_tier_config() -> TierConfigFactory:
    """Build a ladder of the given tier tables (cheapest first); every role starts on the first."""
    return _tier_config


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def ollama_model() -> str:
    """The model name the Ollama-protocol server answers for."""
    return OLLAMA_MODEL


def server_tier(
    name: str, provider: str, model: str, base_url: str, *, method: str, price: tuple[float, float], **extra: Any
) -> dict[str, Any]:
    """A tier of one of the test servers, with small outputs: the two CPU cores may be shared."""
    return {
        "name": name,
        "provider": provider,
        "model": model,
        "base_url": base_url,
        **extra,
        "timeout_s": 300,  # a bound for a hung server
        "max_output_tokens": 64,
        "price_input_per_mtok": price[0],
        "price_output_per_mtok": price[1],
        "capabilities": {"tools": True, "structured_output": method, "context_window": 2048},
    }


def _model_server(name: str, argv: list[str], *, log_path: Path, ready_path: str) -> contextlib.AbstractContextManager[ServerProcess]:
    """A model server on a free loopback port, written into `argv` where it says PORT."""
    port = free_port()
    argv = [str(port) if arg == "PORT" else arg for arg in argv]
    return running_server(name, argv, port=port, log_path=log_path, ready_path=ready_path, deadline_s=SERVER_START_DEADLINE_S, cwd=REPO_ROOT)


@pytest.fixture(scope="session")
def ollama_server(server_logs: Path) -> Iterator[ServerProcess]:
    """Ollama's HTTP API over the embedded SmolLM2; with tools, the model chooses whether to call one."""
    argv = [
        "python", "-m", "tests.servers.ollama_protocol",
        "--host", LOOPBACK, "--port", "PORT",
        "--model", f"smollm2-135m-instruct={OLLAMA_MODEL}",
        "--n-ctx", str(SERVER_N_CTX), "--log-level", "info",
    ]
    with _model_server("ollama-protocol server", argv, log_path=server_logs / "ollama_protocol.log", ready_path="/api/version") as server:
        yield server


@pytest.fixture(scope="session")
def llama_cpp_server(server_logs: Path) -> Iterator[ServerProcess]:
    """llama-cpp-python's OpenAI-compatible server over the SmolLM2 GGUF file."""
    gguf, _, _ = resolve_model_path("smollm2-135m-instruct")
    argv = [
        "python", "-m", "llama_cpp.server",
        "--model", str(gguf), "--model_alias", "smollm2",
        "--host", LOOPBACK, "--port", "PORT", "--n_ctx", str(SERVER_N_CTX),
    ]
    with _model_server("llama_cpp.server", argv, log_path=server_logs / "llama_cpp_server.log", ready_path="/v1/models") as server:
        yield server


@pytest.fixture(scope="session")
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, 0))
        sock.listen(64)
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@pytest.fixture
def dead_port() -> int:
    """A loopback port nobody listens on: connections are refused at once."""
    return free_port()
