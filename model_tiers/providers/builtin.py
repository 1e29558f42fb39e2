"""tierflow's own provider kinds, registered in the catalog the same way a user's are.

Each build function imports its provider package when a tier of that kind is built, so a
missing optional package only matters for the tiers that use it, and the error says what
to install.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from tierflow.model_tiers.errors import ConfigError, MissingCredential, MissingDependency
from tierflow.model_tiers.providers.catalog import FunctionProvider, ProviderCapabilities
from tierflow.model_tiers.secrets import register_secret

if TYPE_CHECKING:  # spec.py imports the catalog, which imports this module on first lookup
    from langchain_core.language_models import BaseChatModel

    from tierflow.model_tiers.spec import TierSpec

__all__ = ["BUILTIN_PROVIDERS", "DEFAULT_OLLAMA_URL", "api_key_for", "key_env_of"]

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"
# The first langchain-ollama release whose ChatOllama asks Ollama for token log-probabilities.
OLLAMA_LOGPROBS_SINCE = "1.1.0"


def key_env_of(spec: TierSpec) -> str | None:
    """The environment variable an `openai` tier reads its key from (None: it sends none)."""
    if spec.provider != "openai":
        return None
    var = "OPENAI_API_KEY" if spec.api_key_env is None else spec.api_key_env
    return var or None


def api_key_for(spec: TierSpec, env: Mapping[str, str]) -> str:
    """The key an `openai` tier sends. `api_key_env = ""` declares a keyless local server."""
    var = key_env_of(spec)
    if var is None:
        return "not-needed"
    key = env.get(var)
    if not key:
        raise MissingCredential(spec.name, var)
    register_secret(key)
    return key


def _build_ollama(spec: TierSpec, env: Mapping[str, str]) -> BaseChatModel:
    try:
        from langchain_ollama import ChatOllama
    except ImportError:
        raise MissingDependency("langchain-ollama", purpose=f"tier '{spec.name}' (provider ollama)") from None
    if spec.logprobs and "logprobs" not in ChatOllama.model_fields:
        # An older ChatOllama drops the parameter, and the tier's confidence would silently vanish.
        try:
            installed = version("langchain-ollama")
        except PackageNotFoundError:
            installed = "unknown"
        raise ConfigError(
            f"tier '{spec.name}' asks for token log-probabilities (logprobs = true, the default), and the "
            f"installed langchain-ollama {installed} cannot request them (added in {OLLAMA_LOGPROBS_SINCE}): run "
            f"pip install 'langchain-ollama>={OLLAMA_LOGPROBS_SINCE}', or set logprobs = false on the tier"
        )
    return ChatOllama(
        model=spec.model,
        base_url=spec.base_url or DEFAULT_OLLAMA_URL,
        temperature=spec.temperature,
        num_predict=spec.max_output_tokens,
        num_ctx=spec.capabilities.context_window,
        client_kwargs={"timeout": spec.timeout_s},
        logprobs=spec.logprobs or None,
        **spec.options,
    )


def _build_openai(spec: TierSpec, env: Mapping[str, str]) -> BaseChatModel:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        raise MissingDependency("langchain-openai", purpose=f"tier '{spec.name}' (provider openai)") from None
    return ChatOpenAI(
        model=spec.model,
        base_url=spec.base_url,
        api_key=api_key_for(spec, env),  # type: ignore[arg-type]  # a str is accepted; the stub says SecretStr
        temperature=spec.temperature,
        max_tokens=spec.max_output_tokens,  # type: ignore[call-arg]  # an alias of max_completion_tokens
        timeout=spec.timeout_s,
        # Retries are the escalation engine's decision, not the HTTP client's.
        max_retries=0,
        logprobs=spec.logprobs or None,
        # llama_cpp.server returns log-probabilities only when top_logprobs is set as well.
        top_logprobs=1 if spec.logprobs else None,
        **spec.options,
    )


def _build_embedded(spec: TierSpec, env: Mapping[str, str]) -> BaseChatModel:
    from tierflow.model_tiers.providers.embedded import EmbeddedChatModel

    known = {"n_ctx", "n_threads"}
    unknown = set(spec.options) - known
    if unknown:
        raise ConfigError(f"tier '{spec.name}': unknown embedded options {sorted(unknown)}; allowed: {sorted(known)}")
    return EmbeddedChatModel(
        model=spec.model,
        tier=spec.name,
        temperature=spec.temperature,
        max_tokens=spec.max_output_tokens,
        n_ctx=int(spec.options.get("n_ctx", min(spec.capabilities.context_window, 4096))),
        n_threads=spec.options.get("n_threads"),
        timeout_s=spec.timeout_s,
        adapter=spec.adapter,
        describe_schema=spec.prompt == "full",
    )


def _build_scripted(spec: TierSpec, env: Mapping[str, str]) -> BaseChatModel:
    from tierflow.model_tiers.testing import scripted_model_from_options

    return scripted_model_from_options(spec.name, spec.options)


def _build_replay(spec: TierSpec, env: Mapping[str, str]) -> BaseChatModel:
    from tierflow.model_tiers.providers.replay import replay_model_from_options

    # The datasets folder is the process's ($TIERFLOW_DATASETS), as for every other reader of it.
    return replay_model_from_options(spec.name, spec.options)


BUILTIN_PROVIDERS: dict[str, FunctionProvider] = {
    # Scripted replies may raise any exception, an HTTP error included: it stands in for every kind.
    "scripted": FunctionProvider(_build_scripted, ProviderCapabilities(logprobs=False, local=True, served=False)),
    # Token log-probabilities from llama.cpp's own logits; tool calls and schemas under a grammar.
    "embedded": FunctionProvider(_build_embedded, ProviderCapabilities(logprobs=True, local=True, served=False)),
    "openai": FunctionProvider(_build_openai, ProviderCapabilities(logprobs=True, local=False, served=True)),
    "ollama": FunctionProvider(_build_ollama, ProviderCapabilities(logprobs=True, local=True, served=True)),
    # A recording holds answers, not tool decisions: a free tool choice is answered in text.
    # Its structured output is filled from the recorded answer (options.fields).
    "replay": FunctionProvider(_build_replay, ProviderCapabilities(tools=False, logprobs=False, local=True, served=False)),
}
