"""The guard every entry point runs behind: one line on stderr, never a traceback.

    if __name__ == "__main__":
        sys.exit(guard("python -m tierflow.evals.bench.embedded", main))

Exit status: the body's own (0 when it returns None); 2 for a configuration or environment
problem (a `TierflowError`, or the machine refusing: a full disk, a permission, a file that
is not a database); 1 for anything unexpected, whose traceback goes to a log file under
$TIERFLOW_HOME/logs; 130 on Ctrl-C. `SystemExit` (argparse's usage errors) passes through.
"""

from __future__ import annotations

import sqlite3
import traceback
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from tierflow.model_tiers.errors import TierflowError
from tierflow.model_tiers.home import write_crash_log
from tierflow.model_tiers.secrets import redact

__all__ = ["guard", "crash_log", "EXIT_BAD_INPUT", "EXIT_UNEXPECTED", "EXIT_INTERRUPTED"]

EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def crash_log(err: BaseException) -> Path | None:
    """Write `err`'s traceback to a log file under the data folder (see `write_crash_log`)."""
    return write_crash_log("".join(traceback.format_exception(err)))


def guard(command: str, body: Callable[[], int | None]) -> int:
    """Run `body` and return the exit status its outcome stands for (see the module's
    docstring); `command` names the entry point in the line printed for a bug."""
    err_console = Console(stderr=True, soft_wrap=True)
    try:
        return int(body() or 0)
    except TierflowError as err:
        err_console.print(f"[red]error:[/red] {redact(str(err))}", highlight=False)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        err_console.print("interrupted", highlight=False)
        return EXIT_INTERRUPTED
    except (OSError, sqlite3.DatabaseError) as err:
        # the machine, not tierflow: a full disk, a permission, a file that is not a database
        log = crash_log(err)
        where = f" (traceback: {log})" if log else ""
        err_console.print(f"[red]error:[/red] {type(err).__name__}: {redact(str(err))}{where}", highlight=False)
        return EXIT_BAD_INPUT
    except Exception as err:
        log = crash_log(err)
        where = f"the traceback is in {log}" if log else "no log file could be written"
        err_console.print(
            f"[red]error:[/red] {command} failed unexpectedly: {type(err).__name__}: {redact(str(err))} ({where}; please report it)",
            highlight=False,
        )
        return EXIT_UNEXPECTED
