"""Start a server as a subprocess on a free loopback port, wait until it answers, stop it.

The log goes to a file the caller chooses (a pytest tmp dir, outside the repository: a
file written inside the project would wake up file watchers). A server that dies or does
not answer before its deadline raises `ServerStartError` with the end of its log, and is
killed first. On Linux the child also gets SIGTERM when the process that started it dies,
so a crashed test session leaves no server behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec

import httpx

__all__ = [
    "LOOPBACK",
    "ServerProcess",
    "ServerStartError",
    "free_port",
    "start_server",
    "running_server",
]

P = ParamSpec("P")
LOOPBACK = "127.0.0.1"
_LOG_TAIL_CHARS = 4000


class ServerStartError(RuntimeError):
    """A test server exited or did not become ready before its deadline."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        return f"(log unreadable: {err})"
    return text[-_LOG_TAIL_CHARS:]


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM it when its parent dies."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass  # not Linux/glibc: the fixture's teardown still stops the server


@dataclass
class ServerProcess:
    """A running server: where it listens, its process and its log file."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log_tail(self) -> str:
        return _log_tail(self.log_path)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, wait up to `grace_s`, then SIGKILL. Safe to call twice."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=grace_s)


def _wait_until_ready(server: ServerProcess, ready_path: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            raise ServerStartError(
                f"{server.name} exited with code {code} before it was ready; log {server.log_path}:\n"
                f"{server.log_tail()}"
            )
        try:
            response = httpx.get(f"{server.url}{ready_path}", timeout=2.0)
            if response.status_code == 200:
                return
            last_error = f"HTTP {response.status_code}"
        except httpx.HTTPError as err:
            last_error = f"{type(err).__name__}: {err}"
        time.sleep(0.2)
    raise ServerStartError(
        f"{server.name} was not ready after {deadline_s:g}s (GET {ready_path}: {last_error}); "
        f"log {server.log_path}:\n{server.log_tail()}"
    )


def start_server(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    log_path: Path,
    ready_path: str,
    deadline_s: float = 120.0,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """Run `argv` (a server listening on `port`), wait until GET `ready_path` answers 200.

    `argv[0]` may be "python": it is replaced by the running interpreter, so the server
    runs in the same environment as the tests.
    """
    command = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(os.environ if env is None else env),
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    server = ServerProcess(name=name, port=port, process=process, log_path=log_path)
    try:
        _wait_until_ready(server, ready_path, deadline_s)
    except BaseException:
        server.stop(grace_s=5.0)
        raise
    return server


def _stopped_on_exit(start: Callable[P, ServerProcess]) -> Callable[P, contextlib.AbstractContextManager[ServerProcess]]:
    @contextlib.contextmanager
    def scoped(*args: P.args, **kwargs: P.kwargs) -> Iterator[ServerProcess]:
        server = start(*args, **kwargs)
        try:
            yield server
        finally:
            server.stop()

    return scoped


# `start_server` as a context manager: the server is stopped however the block exits.
running_server = _stopped_on_exit(start_server)
