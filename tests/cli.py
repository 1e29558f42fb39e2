"""Running the `tierflow` command as a user would, in a subprocess, on scripted tiers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

__all__ = ["scripted_cli_env", "tierflow"]


def scripted_cli_env(tmp_path: Path, tiers_toml: str) -> dict[str, str]:
    """An environment with the tiers file `tiers_toml` and a data folder under `tmp_path`,
    and none of the developer's keys or hosts."""
    tiers = tmp_path / "tiers.toml"
    tiers.write_text(tiers_toml)
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OLLAMA_HOST")}
    env.update({"TIERFLOW_TIERS": str(tiers), "TIERFLOW_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO_ROOT)})
    return env


def tierflow(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierflow.cli", *args], cwd=REPO_ROOT, env=env, text=True,
        capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
