"""Killing a process at a chosen point: it runs until it creates a marker file (where it
then waits), and is killed there with SIGKILL, as a crash or an OOM kill would stop it."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.conftest import REPO_ROOT

__all__ = ["kill_at_marker"]


def kill_at_marker(argv: Sequence[str], marker: Path, *, timeout_s: float, env: Mapping[str, str] | None = None) -> None:
    """Run `argv` (in the repository, no stdin) until it creates `marker`, then SIGKILL it.
    Fails the test with the process's stderr when it ends first or never gets there."""
    log = marker.with_name(marker.name + ".stderr")
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            list(argv), cwd=REPO_ROOT, env=None if env is None else dict(env),
            stdout=subprocess.DEVNULL, stderr=stderr, stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + timeout_s
            while not marker.exists():
                assert proc.poll() is None, f"{argv} ended before creating {marker}:\n{log.read_text(errors='replace')}"
                assert time.monotonic() < deadline, f"{argv} did not create {marker} within {timeout_s:g} s"
                time.sleep(0.1)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
