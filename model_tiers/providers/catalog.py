"""The provider kinds a tier may name: tierflow's own and the user's, registered one way.

A provider kind is a `ProviderFactory`: it builds the LangChain chat model of one tier
(`factory(spec, env)`) and declares what every model of its kind can do
(`factory.capabilities`). A tiers file names it by the name it was registered under
(``provider = "my_llm"``).

Three ways in, one table:

* the built-in kinds (scripted, embedded, openai, ollama, replay), registered on first
  lookup from `builtin.py`; their packages are imported only when a tier is built;
* `register_provider(name, factory)` from the user's own code, before the tiers file is
  loaded;
* an entry point in the group ``tierflow.providers`` of an installed distribution
  (``my_llm = "my_package.tierflow_provider:factory"``), loaded the first time a tiers
  file names a provider that is not registered yet, so installed plugins cost nothing
  until used.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tierflow.model_tiers.errors import ConfigError

if TYPE_CHECKING:  # spec.py validates provider names through this module
    from langchain_core.language_models import BaseChatModel

    from tierflow.model_tiers.spec import TierSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "ProviderCapabilities",
    "ProviderFactory",
    "FunctionProvider",
    "register_provider",
    "unregister_provider",
    "get_provider",
    "provider_names",
]

ENTRY_POINT_GROUP = "tierflow.providers"
_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")


@dataclass(frozen=True)
class ProviderCapabilities:
    """What every model of a provider kind can do. A tier narrows it in its own
    ``[capabilities]`` (a model without tool support behind a provider that has it).

    `local`: its models run on hardware the user controls, so a tier of this kind may see
    ``local_only`` data unless the tier says otherwise. `served`: it calls a server whose
    outages outlast one request (a cool-down after a 429 or a 5xx saves requests), and
    its failures arrive as HTTP statuses and transport errors.
    """

    tools: bool = True
    json_schema: bool = True
    logprobs: bool = False
    local: bool = False
    served: bool = True


@runtime_checkable
class ProviderFactory(Protocol):
    """Builds the chat model of one tier of this kind; declares what the kind can do.

    `__call__` raises tierflow's typed errors for what the user must fix: `ConfigError`
    (bad options), `MissingDependency` (a package to install), `MissingCredential` (a
    key to set). It should not open connections: the registry builds models lazily, and
    a server that is down is a call's failure, not a configuration error.
    """

    @property
    def capabilities(self) -> ProviderCapabilities: ...

    def __call__(self, spec: TierSpec, env: Mapping[str, str]) -> BaseChatModel: ...


@dataclass(frozen=True)
class FunctionProvider:
    """A `ProviderFactory` made of a build function and its declared capabilities."""

    build: Callable[[TierSpec, Mapping[str, str]], BaseChatModel]
    capabilities: ProviderCapabilities = ProviderCapabilities()

    def __call__(self, spec: TierSpec, env: Mapping[str, str]) -> BaseChatModel:
        return self.build(spec, env)


_FACTORIES: dict[str, ProviderFactory] = {}
_LOCK = threading.RLock()
_BUILTINS_REGISTERED = False


def _check_factory(name: str, factory: object, origin: str) -> ProviderFactory:
    if not isinstance(factory, ProviderFactory) or not callable(factory):
        raise ConfigError(
            f"the provider '{name}' ({origin}) is a {type(factory).__name__}, not a ProviderFactory: it must be "
            "callable as factory(spec, env) and have a `capabilities` attribute (a ProviderCapabilities); "
            "tierflow.model_tiers.FunctionProvider(build, capabilities) makes one from a function"
        )
    if not isinstance(factory.capabilities, ProviderCapabilities):
        raise ConfigError(
            f"the provider '{name}' ({origin}) declares capabilities of type {type(factory.capabilities).__name__}; "
            "expected a tierflow.model_tiers.ProviderCapabilities"
        )
    return factory


def _ensure_builtins() -> None:
    global _BUILTINS_REGISTERED
    with _LOCK:
        if _BUILTINS_REGISTERED:
            return
        # Imported here: builtin.py needs this module's classes to declare its factories.
        from tierflow.model_tiers.providers.builtin import BUILTIN_PROVIDERS

        _FACTORIES.update(BUILTIN_PROVIDERS)
        _BUILTINS_REGISTERED = True


def register_provider(name: str, factory: ProviderFactory, *, replace: bool = False) -> None:
    """Make `factory` the provider kind `name` that tiers files may name.

    Registering a name twice is an error unless `replace` (a test swapping a provider, a
    user's own build of ``openai``).
    """
    if not _NAME.match(name):
        raise ConfigError(f"provider name {name!r} must be a lowercase word (a-z, 0-9, '_', '.' or '-')")
    checked = _check_factory(name, factory, "register_provider")
    _ensure_builtins()
    with _LOCK:
        if name in _FACTORIES and not replace and _FACTORIES[name] is not checked:
            raise ConfigError(
                f"a provider named '{name}' is already registered; pass replace=True to replace it, "
                "or register yours under another name"
            )
        _FACTORIES[name] = checked


def unregister_provider(name: str) -> None:
    """Forget the provider kind `name` (a test's own registration). KeyError if unknown."""
    with _LOCK:
        del _FACTORIES[name]


def _entry_points() -> list[EntryPoint]:
    return list(entry_points(group=ENTRY_POINT_GROUP))


def _load_entry_point(name: str) -> ProviderFactory | None:
    found = [ep for ep in _entry_points() if ep.name == name]
    if not found:
        return None
    point = found[0]
    where = f"entry point '{point.value}' in group '{ENTRY_POINT_GROUP}'" + (f" of {point.dist.name}" if point.dist else "")
    try:
        loaded = point.load()
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"the provider '{name}' ({where}) does not load: {type(err).__name__}: {err}") from err
    return _check_factory(name, loaded, where)


def get_provider(name: str) -> ProviderFactory:
    """The provider kind registered as `name`, looking through installed entry points the
    first time a name is unknown. Raises ConfigError naming the known providers."""
    _ensure_builtins()
    with _LOCK:
        factory = _FACTORIES.get(name)
        if factory is None:
            factory = _load_entry_point(name)
            if factory is not None:
                _FACTORIES[name] = factory
    if factory is None:
        raise ConfigError(
            f"unknown provider '{name}'; the known providers are: {', '.join(map(repr, provider_names()))}. "
            "A provider of your own is registered with tierflow.model_tiers.register_provider(name, factory), "
            f"or by an installed package's entry point in the group '{ENTRY_POINT_GROUP}'"
        )
    return factory


def provider_names() -> tuple[str, ...]:
    """Every provider a tiers file may name: registered ones and installed entry points
    (the latter are listed without being loaded)."""
    _ensure_builtins()
    with _LOCK:
        names = set(_FACTORIES)
    names.update(ep.name for ep in _entry_points())
    return tuple(sorted(names))
