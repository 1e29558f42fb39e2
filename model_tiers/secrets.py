"""Masking secrets in every string tierflow prints or stores.

Two kinds of secret are masked: the values of the environment variables tiers read their
keys from (registered when a tier's key is read, so a key is masked even where it does not
look like one), and strings shaped like bearer tokens or API keys (a proxy may echo a key
that tierflow never read, in the body of a 401, say).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterable, Mapping
from typing import TypeVar, overload

__all__ = ["MASK", "register_secret", "register_secrets_from_env", "redact", "redact_value", "redact_exception"]

MASK = "<redacted>"

# Shorter values are not masked as secrets: masking "abc" everywhere would garble text,
# and no real API key is that short.
_MIN_SECRET_CHARS = 8

_SHAPES = (
    # An Authorization header's value, however it is quoted or cased.
    re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    # OpenAI / Anthropic / GitHub / Slack / AWS / Google key shapes.
    re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{12,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"),
    # key=value or "key": "value" pairs whose name says what the value is.
    re.compile(
        r"""(?ix)\b((?:api[_-]?key|access[_-]?token|auth[_-]?token|x-api-key|authorization)
        ["']?\s*[:=]\s*["']?)(?!<redacted>|bearer\s)[^\s"',;}&]{8,}"""
    ),
)

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask `value` wherever it appears from now on (in this process)."""
    if value and len(value.strip()) >= _MIN_SECRET_CHARS:
        with _lock:
            _secrets.add(value.strip())


def register_secrets_from_env(names: Iterable[str], env: Mapping[str, str]) -> None:
    for name in names:
        register_secret(env.get(name))


def _mask_shape(match: re.Match[str]) -> str:
    # Keep the label ("Bearer ", "api_key=") so the reader sees what was masked.
    return (match.group(1) if match.lastindex else "") + MASK


# Every shape above contains one of these (lowercased): texts without any skip the regexes.
_MARKERS = ("bearer", "sk-", "gh", "xox", "akia", "aiza", "key", "token", "authorization")


def redact(text: str) -> str:
    """`text` with every registered secret and every key-shaped string masked."""
    if len(text) < _MIN_SECRET_CHARS:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    lowered = text.lower()
    if any(marker in lowered for marker in _MARKERS):
        for shape in _SHAPES:
            text = shape.sub(_mask_shape, text)
    return text


T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")


# The same shape back, except that any mapping comes back as a plain dict.
@overload
def redact_value(value: str) -> str: ...
@overload
def redact_value(value: Mapping[K, V]) -> dict[K, V]: ...
@overload
def redact_value(value: T) -> T: ...
def redact_value(value: object) -> object:
    """A copy of a JSON-like value (dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v) for v in value)
    return value


def redact_exception(err: BaseException) -> BaseException:
    """Mask secrets in `err`'s message in place (its args), and in those of its causes.

    LangGraph stores a failed task's exception in the checkpoint, and a traceback prints
    every exception in the chain, so all of them are cleaned, not only the outermost.
    """
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        # An exception type with read-only attributes keeps them: its str() is masked where printed.
        with contextlib.suppress(AttributeError, TypeError):
            current.args = tuple(redact(a) if isinstance(a, str) else a for a in current.args)
        for attr in ("reason", "raw", "message", "body"):
            val = getattr(current, attr, None)
            if isinstance(val, str):
                with contextlib.suppress(AttributeError, TypeError):
                    setattr(current, attr, redact(val))
        current = current.__cause__ or current.__context__
    return err
