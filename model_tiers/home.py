"""tierflow's data folder, resolved in one place: `$TIERFLOW_HOME`, else `./.tierflow`.

Checkpoints, business databases, the knowledge base, eval runs and crash logs all live
under it. Resolving is free of side effects; `home_dir()` creates the folder.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from model_tiers.errors import ConfigError
from model_tiers.secrets import redact

__all__ = ["ENV_HOME", "home_path", "home_dir", "write_crash_log", "corrupt_database_message"]

ENV_HOME = "TIERFLOW_HOME"


def home_path() -> Path:
    """The data folder as configured (not created, not checked)."""
    configured = os.environ.get(ENV_HOME, "").strip()
    return Path(configured).expanduser() if configured else Path.cwd() / ".tierflow"


def home_dir() -> Path:
    """The data folder, created if missing; a clear error when a file stands in its place."""
    path = home_path()
    if path.exists() and not path.is_dir():
        what = f"{ENV_HOME}={path}" if os.environ.get(ENV_HOME, "").strip() else str(path)
        raise ConfigError(f"{what} is a file, not a folder: point {ENV_HOME} at a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the data folder {path}: {err.strerror}; set {ENV_HOME} to a writable folder") from None
    return path


def write_crash_log(text: str, *, prefix: str = "crash") -> Path | None:
    """Write `text` (a traceback), secrets masked, to a new file under the data folder's
    `logs/` (else the temp folder: the home itself may be what is broken); None if no
    folder is writable."""
    name = f"{prefix}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}.log"
    for folder in (home_path() / "logs", Path(tempfile.gettempdir()) / "tierflow-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(redact(text), encoding="utf-8")
            return folder / name
        except OSError:
            continue
    return None


def corrupt_database_message(path: Path, err: BaseException, *, what: str) -> str:
    """What to say about a SQLite file that is not a database: which file, and how to move
    it aside so the next run starts with a new one (the old file is kept, not deleted)."""
    aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
    return (
        f"the {what} {path} is not a readable SQLite database ({err}). Move it aside and a new "
        f"one is created on the next run: mv '{path}' '{aside}'"
    )
