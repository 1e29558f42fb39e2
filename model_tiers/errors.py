"""One exception hierarchy for tierflow.

The split follows what the caller should do about it:

* ``ConfigError`` / ``MissingDependency`` / ``MissingCredential``: a developer or operator
  must change something (a file, an install, an environment variable). Never retried.
* ``TierMisconfigured`` (a ``ConfigError``): the endpoint answered that the tier itself is
  wrong (HTTP 404 for the model name, 401/403 for the key). Never a fallback: the next tier
  would spend money on a call a config fix would have made cheap.
* ``TierUnreachable``: the model endpoint did not answer (refused, timed out, 429, 5xx). The
  escalation engine treats it as a *fault* and falls through to the next tier.
* ``InvalidModelOutput``: the model answered but the answer does not fit the contract
  (bad JSON, wrong schema, unknown tool). The verifier records it as a failed verdict.

A spent run budget is no exception: the budget policy (`stop`, `interrupt`, `cheaper_only`)
decides in the step node, and a stopped run ends with status "stopped" and a failure of
kind "budget" in its state, its verified results kept (agents/loop/step.py).
"""

from __future__ import annotations

__all__ = [
    "TierflowError",
    "ConfigError",
    "MissingDependency",
    "MissingCredential",
    "TierMisconfigured",
    "TierUnreachable",
    "InvalidModelOutput",
    "NetworkBlocked",
    "ToolRefusal",
]


class TierflowError(Exception):
    """Base class of every error tierflow raises on purpose.

    Errors pickle by their message and attributes, not by calling the constructor again
    (whose arguments differ per subclass): LangGraph's server and process pools move
    exceptions between processes.
    """

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[TierflowError], args: tuple[object, ...], state: dict[str, object]) -> TierflowError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class ConfigError(TierflowError, ValueError):
    """A configuration file, environment override or run context is invalid.

    ``source`` names where the bad value came from (a file path, ``env:VAR`` or
    ``run context``) so the message can say exactly what to fix.
    """

    def __init__(self, message: str, *, source: str | None = None) -> None:
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class MissingDependency(TierflowError, ImportError):
    """A provider needs an optional package that is not installed."""

    def __init__(self, package: str, *, extra: str | None = None, purpose: str = "") -> None:
        self.package = package
        self.extra = extra
        hint = f"pip install 'tierflow[{extra}]'" if extra else f"pip install {package}"
        what = f" for {purpose}" if purpose else ""
        super().__init__(f"the package '{package}' is needed{what} but is not installed; run: {hint}")


class MissingCredential(TierflowError):
    """A tier needs an API key that is not set in the environment."""

    def __init__(self, tier: str, env_var: str) -> None:
        self.tier = tier
        self.env_var = env_var
        super().__init__(
            f"tier '{tier}' needs an API key: set the environment variable {env_var} "
            f"(or point the tier at another variable with api_key_env in tiers.toml)"
        )


class TierMisconfigured(ConfigError):
    """The tier's endpoint answered that the tier's own configuration is wrong.

    `status` is the HTTP status (404: no such model there; 401/403: the key is refused).
    `usage` is the ledger record of the rejected request: it reached the server.
    """

    def __init__(self, tier: str, status: int, message: str, *, usage: object | None = None) -> None:
        self.tier = tier
        self.status = status
        self.usage = usage
        ConfigError.__init__(self, message, source=f"tier '{tier}'")


class TierUnreachable(TierflowError):
    """The tier's endpoint did not answer in time, refused the call, or said "later" (429, 5xx).

    `usage` is the ledger record of the request when it reached the server (a timeout, an
    HTTP error); None when nothing was sent (a refused connection, a tier cooling down).
    """

    def __init__(self, tier: str, reason: str, *, usage: object | None = None) -> None:
        self.tier = tier
        self.reason = reason
        self.usage = usage
        super().__init__(f"tier '{tier}' is unreachable: {reason}")


class InvalidModelOutput(TierflowError):
    """The model answered, but not in the shape that was asked for."""

    def __init__(self, tier: str, reason: str, *, raw: str = "", usage: object | None = None) -> None:
        self.tier = tier
        self.reason = reason
        self.raw = raw
        # The ledger `Usage` of the call that produced the bad output, when there was one:
        # a rejected answer still cost tokens.
        self.usage = usage
        super().__init__(f"tier '{tier}' returned invalid output: {reason}")


class ToolRefusal(TierflowError):
    """A tool (or an action step's code) declined the call it was given: bad arguments, an
    unknown record, a policy. The model's mistake: a failed verdict, fed back. Any other
    error a tool raises is not a refusal: a TierflowError is a problem to fix (a missing
    file, a corrupt database), anything else a bug."""


class NetworkBlocked(TierflowError, RuntimeError):
    """A test tried to open a network connection while the kill switch was on."""
