"""What a provider's exception means for the ladder, decided from the HTTP status where
there is one and from the transport failure where there is none.

* 401 / 403 / 404: the tier is misconfigured (a bad key, a wrong model name or URL). A
  configuration error with what to fix; never a fallback.
* 408 / 409 / 429 / 5xx, timeouts, refused or dropped connections: the tier is unavailable
  for now. A fault: fall through to the next tier, and cool this one down.
* Any other 4xx (a request this server will not take: too long, a parameter it lacks): a
  fault of this request on this tier, without a cool-down.

Exception classes are matched by name anywhere in the MRO, so this module needs none of
the optional provider packages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tierflow.model_tiers.secrets import redact
from tierflow.model_tiers.spec import TierSpec

__all__ = ["ProviderFailure", "classify_provider_error", "http_status"]

# Failures before any request was sent (so nothing to account for).
_NOT_SENT = frozenset({"ConnectError", "ConnectTimeout", "ConnectionRefusedError"})
_TRANSPORT = frozenset(
    {
        "ConnectError",
        "ConnectTimeout",
        "APIConnectionError",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "TimeoutException",
        "RemoteProtocolError",
        "ReadError",
        "APITimeoutError",
        "TimeoutError",
    }
)
_TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
_CONFIG_STATUS = frozenset({401, 403, 404})


@dataclass(frozen=True)
class ProviderFailure:
    """A classified provider exception.

    `kind`: "config" (fix the tier), "unavailable" (fall back, cool down) or "rejected"
    (fall back for this request only). `reached_server`: whether a request was sent, so
    the ledger must account for it.
    """

    kind: Literal["config", "unavailable", "rejected"]
    status: int | None
    reached_server: bool
    message: str


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an SDK exception carries (openai, ollama, httpx), if any."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _body_text(exc: BaseException) -> str:
    # The SDKs put the server's error message in str(exc); a proxy may echo headers there.
    return redact(str(exc))[:300]


def _config_message(spec: TierSpec, status: int, detail: str, key_env: str | None) -> str:
    where = spec.base_url or "the provider's default endpoint"
    if status == 404:
        return (
            f"the server at {where} has no model '{spec.model}' (HTTP 404: {detail}). Check `model` "
            f"(and `base_url`) of tier '{spec.name}' in the tiers file; `tierflow doctor` shows what each tier answers"
        )
    var = f"the key in ${key_env}" if key_env else "the tier's API key"
    return (
        f"the server at {where} refused {var} (HTTP {status}: {detail}). Set a valid key "
        f"(or point `api_key_env` of tier '{spec.name}' at the right variable), then run `tierflow doctor`"
    )


def classify_provider_error(spec: TierSpec, exc: BaseException, *, key_env: str | None = None) -> ProviderFailure | None:
    """What `exc`, raised by `spec`'s provider during a call, means; None when it is none of
    the known failures (a bug, to be raised as it is)."""
    status = http_status(exc)
    if status is not None:
        detail = _body_text(exc)
        if status in _CONFIG_STATUS:
            return ProviderFailure("config", status, True, _config_message(spec, status, detail, key_env))
        if status in _TRANSIENT_STATUS or status >= 500:
            return ProviderFailure("unavailable", status, True, f"HTTP {status}: {detail}")
        if 400 <= status < 500:
            return ProviderFailure("rejected", status, True, f"HTTP {status}: {detail}")
    chain = _chain(exc)
    chain_names = {cls.__name__ for err in chain for cls in type(err).__mro__}
    if chain_names & _TRANSPORT or any(isinstance(err, (TimeoutError, ConnectionError)) for err in chain):
        # An SDK wraps the transport error (openai's APIConnectionError around httpx's
        # ConnectError): whether a request went out is decided by the innermost one.
        sent = not (chain_names & _NOT_SENT or any(isinstance(err, ConnectionRefusedError) for err in chain))
        return ProviderFailure("unavailable", None, sent, f"{type(exc).__name__}: {_body_text(exc)}")
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in out and len(out) < 8:
        out.append(current)
        current = current.__cause__ or current.__context__
    return out
