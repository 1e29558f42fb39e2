"""Run ticket_triage on Postgres checkpoints, and stall right after the ticket is filed.

test_postgres_resume.py starts this as a subprocess and SIGKILLs it while it stalls: the
ticket is in the helpdesk, but the `file` step never finished, so its checkpoint was never
written and a resumed run executes the step again. Tiers come from `TIERFLOW_TIERS`,
business data from `TIERFLOW_HOME`, as for any tierflow process.

    python -m tests.integration.pg_crash_worker --dsn DSN --thread ID --request TEXT --filed PATH
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

from langgraph.checkpoint.postgres import PostgresSaver

from tierflow.graphs import ticket_triage
from tierflow.tools.helpdesk import FiledTicket, Helpdesk

__all__ = ["StallAfterFiling", "main"]


class StallAfterFiling(Helpdesk):
    """A helpdesk that files (really), reports the filing in `marker`, then never returns."""

    def __init__(self, path: Path, marker: Path) -> None:
        super().__init__(path)
        self._marker = marker

    def file_ticket(self, **kwargs: Any) -> FiledTicket:
        filed = super().file_ticket(**kwargs)
        partial = self._marker.with_suffix(".partial")
        partial.write_text(filed.model_dump_json(), encoding="utf-8")
        partial.replace(self._marker)  # the test never reads a half-written marker
        threading.Event().wait()  # until the test kills the process
        return filed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--thread", required=True)
    parser.add_argument("--request", required=True)
    parser.add_argument("--filed", required=True, type=Path, help="written once the ticket is filed")
    args = parser.parse_args(argv)

    resources = dict(ticket_triage.WORKFLOW.open_resources())
    resources["helpdesk"] = StallAfterFiling(resources["helpdesk"].path, args.filed)
    with PostgresSaver.from_conn_string(args.dsn) as saver:
        graph = ticket_triage.build(checkpointer=saver, resources=resources)
        # "sync": every step's checkpoint is in Postgres before the next step starts.
        graph.invoke({"request": args.request}, {"configurable": {"thread_id": args.thread}}, durability="sync")


if __name__ == "__main__":
    main()
