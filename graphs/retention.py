"""Retention for the CLI's checkpoint database: `tierflow gc`.

Every step of every run writes a checkpoint (durability "sync", so a killed run resumes at
the step it was in), and nothing else ever deletes one: a few hundred runs make tens of
megabytes. Pruning does three things, each optional:

* drop whole threads whose last checkpoint is older than a cut-off;
* drop whole threads beyond the N most recently active;
* within every kept thread, drop all but its latest K checkpoints (and their pending
  writes). The latest checkpoint with its writes is what `get_state` and `--resume` read;
  older ones serve only time travel.

Then the file is vacuumed, so the space goes back to the disk. Checkpoint ids are UUIDv6,
whose embedded timestamp says when each was written (no checkpoint is deserialised).
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from tierflow.model_tiers import ConfigError
from tierflow.model_tiers.home import corrupt_database_message

__all__ = ["PruneReport", "prune_checkpoints", "checkpoint_time", "parse_age"]

# 100-ns intervals between the Gregorian epoch of UUID time (1582-10-15) and 1970-01-01.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000


def checkpoint_time(checkpoint_id: str) -> float | None:
    """When a checkpoint was written (Unix seconds), from its UUIDv6 id; None for other ids."""
    try:
        value = uuid.UUID(checkpoint_id)
    except ValueError:
        return None
    if value.version != 6:
        return None
    n = value.int
    ticks = (((n >> 96) & 0xFFFFFFFF) << 28) | (((n >> 80) & 0xFFFF) << 12) | ((n >> 64) & 0x0FFF)
    return (ticks - _UUID_EPOCH_OFFSET) / 1e7


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """'90s', '30m', '12h', '30d' or '2w' -> seconds."""
    value, unit = text.strip()[:-1], text.strip()[-1:].lower()
    try:
        if unit not in _UNITS or float(value) < 0:
            raise ValueError(text)
        return float(value) * _UNITS[unit]
    except ValueError:
        raise ConfigError(f"--older-than takes an age such as 30d, 12h, 45m or 2w, got {text!r}") from None


@dataclass(frozen=True)
class PruneReport:
    threads_before: int
    threads_deleted: int
    checkpoints_before: int
    checkpoints_deleted: int
    writes_deleted: int
    bytes_before: int
    bytes_after: int
    dry_run: bool

    def line(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"{verb} {self.threads_deleted} of {self.threads_before} threads and {self.checkpoints_deleted} of "
            f"{self.checkpoints_before} checkpoints ({self.writes_deleted} pending writes); "
            f"{self.bytes_before / 1e6:.1f} MB -> {self.bytes_after / 1e6:.1f} MB"
        )


def _file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def prune_checkpoints(
    path: Path,
    *,
    older_than_s: float | None = None,
    keep_threads: int | None = None,
    keep_history: int | None = 1,
    dry_run: bool = False,
    now: float | None = None,
) -> PruneReport:
    """Prune the SQLite checkpoint database at `path` (see the module's docstring)."""
    if keep_threads is not None and keep_threads < 0:
        raise ConfigError(f"--keep-threads must be 0 or more, got {keep_threads}")
    if keep_history is not None and keep_history < 1:
        raise ConfigError(f"--keep-history must be 1 or more (the latest checkpoint is what a resume reads), got {keep_history}")
    if not path.exists():
        raise ConfigError(f"no checkpoint database at {path} (nothing has run with this TIERFLOW_HOME)")
    bytes_before = _file_bytes(path)
    now = time.time() if now is None else now
    with closing(sqlite3.connect(str(path))) as conn:
        try:
            rows = conn.execute("SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints").fetchall()
        except sqlite3.OperationalError as err:
            if "no such table" not in str(err):
                raise  # locked, read-only, full disk: the machine's problem, said as such
            rows = []  # a database no run has written a checkpoint to yet
        except sqlite3.DatabaseError as err:
            raise ConfigError(corrupt_database_message(path, err, what="checkpoint database")) from None
        # UUIDv6 ids sort by time, so the largest id is the latest checkpoint.
        latest: dict[str, str] = {}
        per_ns: dict[tuple[str, str], list[str]] = {}
        for thread, ns, cid in rows:
            latest[thread] = max(latest.get(thread, cid), cid)
            per_ns.setdefault((thread, ns), []).append(cid)
        by_recency = sorted(latest, key=lambda t: latest[t], reverse=True)
        doomed: set[str] = set()
        if older_than_s is not None:
            cutoff = now - older_than_s
            doomed |= {t for t in latest if (checkpoint_time(latest[t]) or now) < cutoff}
        if keep_threads is not None:
            doomed |= set(by_recency[keep_threads:])
        stale: list[tuple[str, str, str]] = []
        if keep_history is not None:
            for (thread, ns), ids in per_ns.items():
                if thread not in doomed:
                    stale += [(thread, ns, cid) for cid in sorted(ids, reverse=True)[keep_history:]]
        doomed_checkpoints = sum(len(ids) for (t, _), ids in per_ns.items() if t in doomed)
        writes = _count_writes(conn, doomed, stale)
        if not dry_run:
            with conn:
                if not rows:
                    return PruneReport(0, 0, 0, 0, 0, bytes_before, bytes_before, dry_run)
                conn.executemany("DELETE FROM writes WHERE thread_id = ?", [(t,) for t in doomed])
                conn.executemany("DELETE FROM checkpoints WHERE thread_id = ?", [(t,) for t in doomed])
                conn.executemany("DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", stale)
                conn.executemany("DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", stale)
            conn.execute("VACUUM")
    return PruneReport(
        threads_before=len(latest),
        threads_deleted=len(doomed),
        checkpoints_before=len(rows),
        checkpoints_deleted=doomed_checkpoints + len(stale),
        writes_deleted=writes,
        bytes_before=bytes_before,
        bytes_after=bytes_before if dry_run else _file_bytes(path),
        dry_run=dry_run,
    )


def _count_writes(conn: sqlite3.Connection, threads: set[str], checkpoints: list[tuple[str, str, str]]) -> int:
    total = 0
    for thread in threads:
        total += conn.execute("SELECT count(*) FROM writes WHERE thread_id = ?", (thread,)).fetchone()[0]
    for key in checkpoints:
        total += conn.execute(
            "SELECT count(*) FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", key
        ).fetchone()[0]
    return total
