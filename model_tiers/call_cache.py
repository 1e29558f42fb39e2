"""A call cache for eval runs: identical model calls are answered once and replayed.

Policies of one eval run (all-slm, tiered, all-frontier) make many identical calls (the
slm's first attempt at every step, for one). Answering them from one SQLite file makes
the policies *paired* (they see the same slm answers, where an in-process llama.cpp
otherwise varies between runs of the same call) and the eval cheaper.

LangChain does the keying: a chat model with `cache=` looks each call up by its serialised
messages (`prompt`) and `llm_string` (the model's params plus what was bound: tools,
tool_choice, response_format, stop). `TierScopedCache` prefixes the tier's name and a hash
of its whole spec, because some providers' `llm_string` names neither the model nor its
options (ChatOllama's is only its type and `stop`). LangChain calls `update` only after a
call returned, so a call that raised is never cached.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from langchain_core._api import suppress_langchain_beta_warning
from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.load import Serializable, dumps, loads
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, Generation
from pydantic import BaseModel

from tierflow.model_tiers.ledger import CACHE_HIT_KEY, CACHE_SAVED_KEY
from tierflow.model_tiers.spec import TierSpec

__all__ = ["CacheStats", "SQLiteCallCache", "TierScopedCache", "tier_scope", "releasing_claims", "CALL_CACHE_FILE"]

CALL_CACHE_FILE = "call_cache.sqlite"
# Only these classes may come back out of the file (`loads` revives nothing else).
_REVIVABLE: list[type[Serializable]] = [ChatGeneration, AIMessage, Generation]

_SCHEMA = """CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY, generations TEXT NOT NULL, latency_s REAL NOT NULL, created_at REAL NOT NULL)"""


class CacheStats(BaseModel):
    """What one cache instance answered since it was opened."""

    hits: int = 0
    misses: int = 0
    # Model time the hits did not spend: the summed latency of the calls that filled them.
    saved_s: float = 0.0


# The claims (missed keys, now being computed) of the accounted call in progress, so the
# registry can release those a raising call never fills (see `releasing_claims`).
_CLAIMS: ContextVar[list[tuple[SQLiteCallCache, str, object]] | None] = ContextVar("tierflow_call_claims", default=None)


@contextmanager
def releasing_claims() -> Iterator[None]:
    """Around one model call: keys it missed but never filled (it raised) are released at
    once, so threads waiting for the same call compute it themselves instead of timing out."""
    claims: list[tuple[SQLiteCallCache, str, object]] = []
    token = _CLAIMS.set(claims)
    try:
        yield
    finally:
        _CLAIMS.reset(token)
        for cache, key, owner in claims:
            cache._release(key, owner)


class SQLiteCallCache(BaseCache):
    """LangChain cache in one SQLite file, shared by the concurrent workers of an eval.

    A miss *claims* its key: another thread asking for the same call meanwhile waits (up to
    `wait_s`) for the first one's answer instead of computing its own, so policies running
    the same case at once still see one answer. The claim notes when the call started, and
    `update` stores the elapsed time with the entry: what each later hit saves.
    """

    def __init__(self, path: str | Path, *, wait_s: float = 600.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.wait_s = wait_s
        # One connection behind a lock: each statement takes microseconds next to a model
        # call, and the lock also makes "read, else claim" atomic against `update`.
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")  # other processes may read the run's file
        self._db.execute(_SCHEMA)
        # key -> (claim token, set when it is filled or released, the claiming thread)
        self._claims: dict[str, tuple[object, threading.Event, int]] = {}
        self._started: dict[tuple[int, str], float] = {}
        self._stats = CacheStats()

    @staticmethod
    def _key(prompt: str, llm_string: str) -> str:
        return hashlib.sha256(f"{llm_string}\x00{prompt}".encode()).hexdigest()

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        return self._lookup(prompt, llm_string, wait=True)

    def _lookup(self, prompt: str, llm_string: str, *, wait: bool) -> RETURN_VAL_TYPE | None:
        key, me = self._key(prompt, llm_string), threading.get_ident()
        deadline = time.monotonic() + self.wait_s
        while True:
            with self._lock:
                row = self._db.execute("SELECT generations, latency_s FROM calls WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    self._stats.hits += 1
                    self._stats.saved_s += row[1]
                    break
                claim = self._claims.get(key)
                left = deadline - time.monotonic()
                if claim is None or claim[2] == me or not wait or left <= 0:
                    # Ours to compute: unclaimed, our own earlier claim (that call raised),
                    # or a claim past the wait (its call hung), taken over.
                    owner = object()
                    self._claims[key] = (owner, claim[1] if claim else threading.Event(), me)
                    self._started[(me, key)] = time.perf_counter()
                    self._stats.misses += 1
                    claims = _CLAIMS.get()
                    if claims is not None:
                        claims.append((self, key, owner))
                    return None
                done = claim[1]
            done.wait(timeout=left)
        return [_as_hit(g, row[1]) for g in _revive(row[0])]

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        key = self._key(prompt, llm_string)
        with self._lock:
            started = self._started.pop((threading.get_ident(), key), None)
            latency = 0.0 if started is None else time.perf_counter() - started
            # The first answer stays: every later hit replays the same one.
            self._db.execute(
                "INSERT OR IGNORE INTO calls VALUES (?, ?, ?, ?)", (key, _serialise(return_val), latency, time.time())
            )
            claim = self._claims.pop(key, None)
        if claim is not None:
            claim[1].set()

    def _release(self, key: str, owner: object) -> None:
        with self._lock:
            claim = self._claims.get(key)
            if claim is None or claim[0] is not owner:
                return  # filled, or taken over since
            del self._claims[key]
            self._started.pop((claim[2], key), None)
        claim[1].set()

    def clear(self, **kwargs: Any) -> None:
        with self._lock:
            self._db.execute("DELETE FROM calls")

    # Async callers share one event-loop thread: waiting there for another coroutine's
    # claim would block it, so async lookups never wait (and run inline: SQLite is fast).
    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        return self._lookup(prompt, llm_string, wait=False)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        self.update(prompt, llm_string, return_val)

    def stats(self) -> CacheStats:
        with self._lock:
            return self._stats.model_copy()

    def close(self) -> None:
        with self._lock:
            self._db.close()


class TierScopedCache(BaseCache):
    """`inner` with `scope` (see `tier_scope`) put in front of every `llm_string`."""

    def __init__(self, inner: BaseCache, scope: str) -> None:
        self.inner, self.scope = inner, scope

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        return self.inner.lookup(prompt, f"{self.scope}\n{llm_string}")

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        self.inner.update(prompt, f"{self.scope}\n{llm_string}", return_val)

    def clear(self, **kwargs: Any) -> None:
        self.inner.clear(**kwargs)  # the whole cache: entries are not indexed by scope

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        return await self.inner.alookup(prompt, f"{self.scope}\n{llm_string}")

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        await self.inner.aupdate(prompt, f"{self.scope}\n{llm_string}", return_val)


def tier_scope(spec: TierSpec) -> str:
    """The tier's name and a hash of its whole spec (model, prices, options, prompt mode):
    a changed tier never replays an answer of the old one."""
    blob = json.dumps(spec.model_dump(mode="json"), sort_keys=True, default=str)
    return f"tier={spec.name} spec={hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _serialise(generations: Sequence[Generation]) -> str:
    # Message ids are per run (LangGraph's add_messages dedupes by id): none is stored.
    plain = [
        g.model_copy(update={"message": g.message.model_copy(update={"id": None})}) if isinstance(g, ChatGeneration) else g
        for g in generations
    ]
    return dumps(plain)


def _revive(text: str) -> list[Generation]:
    with suppress_langchain_beta_warning():  # `loads` is marked beta; this use is the documented one
        return list(loads(text, allowed_objects=_REVIVABLE))


def _as_hit(generation: Generation, saved_s: float) -> Generation:
    """A fresh generation (revived per hit, so callers never share one) marked as a hit."""
    if isinstance(generation, ChatGeneration) and isinstance(generation.message, AIMessage):
        meta = {**generation.message.response_metadata, CACHE_HIT_KEY: True, CACHE_SAVED_KEY: saved_s}
        message = generation.message.model_copy(update={"response_metadata": meta})
        return ChatGeneration(message=message, generation_info=generation.generation_info)
    return generation
