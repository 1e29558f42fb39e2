"""tierflow's data folder, resolved in one place: `$TIERFLOW_HOME`, else `./.tierflow`.

Checkpoints, business databases, the knowledge base, eval runs and crash logs all live
under it. Resolving is free of side effects; `home_dir()` creates the folder.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from tierflow.model_tiers.errors import ConfigError
from tierflow.model_tiers.secrets import redact

__all__ = [
    "ENV_HOME",
    "DATASETS_ENV_VAR",
    "home_path",
    "home_dir",
    "datasets_dir",
    "dataset_file",
    "write_crash_log",
    "corrupt_database_message",
]

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


DATASETS_ENV_VAR = "TIERFLOW_DATASETS"

def datasets_dir(env: Mapping[str, str] | None = None) -> Path:
    """The shared datasets folder: ``$TIERFLOW_DATASETS``, else ``../shared/datasets`` from the working folder.

    Raises ``ConfigError`` naming the variable when the folder does not exist.
    """
    environ = os.environ if env is None else env
    configured = environ.get(DATASETS_ENV_VAR, "").strip()
    if configured:
        folder = Path(configured).expanduser()
        if not folder.is_dir():
            raise ConfigError(
                f"the datasets folder '{folder}' does not exist; point {DATASETS_ENV_VAR} "
                "at the folder that holds the public datasets (e.g. tau2_retail/)",
                source=f"env:{DATASETS_ENV_VAR}",
            )
        return folder
    # The datasets sit beside a checkout (../shared/datasets), never inside the package:
    # an installed tierflow has no repository root, so the default follows the folder the
    # command runs in.
    folder = Path.cwd().parent / "shared" / "datasets"
    if not folder.is_dir():
        raise ConfigError(
            f"no datasets folder at the default location '{folder}'; set the environment "
            f"variable {DATASETS_ENV_VAR} to the folder that holds the public datasets"
        )
    return folder


def dataset_file(*parts: str, env: Mapping[str, str] | None = None) -> Path:
    """A file inside the datasets folder, e.g. ``dataset_file("tau2_retail", "db.json")``.

    Raises ``ConfigError`` when the file is missing, naming the folder that was searched.
    """
    folder = datasets_dir(env)
    path = folder.joinpath(*parts)
    if not path.is_file():
        raise ConfigError(
            f"the dataset file '{'/'.join(parts)}' is missing from '{folder}'; check "
            f"{DATASETS_ENV_VAR} points at the right datasets folder"
        )
    return path
