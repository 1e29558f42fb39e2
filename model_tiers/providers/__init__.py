"""The one place that turns a `TierSpec` into a LangChain chat model.

Provider packages are imported lazily, so a missing optional package only matters for the
tiers that use it, and the error says what to install.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from langchain_core.language_models import BaseChatModel

from tierflow.model_tiers.errors import ConfigError, MissingCredential, MissingDependency
from tierflow.model_tiers.secrets import register_secret
from tierflow.model_tiers.spec import TierSpec

__all__ = ["build_chat_model", "DEFAULT_OLLAMA_URL", "api_key_for", "key_env_of"]

DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434"


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


def _build_ollama(spec: TierSpec) -> BaseChatModel:
    try:
        from langchain_ollama import ChatOllama
    except ImportError:
        raise MissingDependency("langchain-ollama", purpose=f"tier '{spec.name}' (provider ollama)") from None
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
        api_key=api_key_for(spec, env),  # type: ignore[arg-type]
        temperature=spec.temperature,
        max_tokens=spec.max_output_tokens,  # type: ignore[call-arg]
        timeout=spec.timeout_s,
        # Retries are the escalation engine's decision, not the HTTP client's.
        max_retries=0,
        logprobs=spec.logprobs or None,
        # llama_cpp.server returns log-probabilities only when top_logprobs is set as well.
        top_logprobs=1 if spec.logprobs else None,
        **spec.options,
    )


def _build_embedded(spec: TierSpec) -> BaseChatModel:
    from tierflow.model_tiers.providers.embedded import EmbeddedChatModel

    known = {"n_ctx", "n_threads"}
    unknown = set(spec.options) - known
    if unknown:
        raise ConfigError(
            f"tier '{spec.name}': unknown embedded options {sorted(unknown)}; allowed: {sorted(known)}"
        )
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


def build_chat_model(spec: TierSpec, *, env: Mapping[str, str] | None = None) -> BaseChatModel:
    """Build the chat model for one tier. Raises a typed error the user can act on."""
    env = os.environ if env is None else env
    if spec.provider == "ollama":
        return _build_ollama(spec)
    if spec.provider == "openai":
        return _build_openai(spec, env)
    if spec.provider == "embedded":
        return _build_embedded(spec)
    if spec.provider == "scripted":
        from tierflow.model_tiers.testing import scripted_model_from_options

        return scripted_model_from_options(spec.name, spec.options)
    if spec.provider == "replay":
        from tierflow.model_tiers.providers.replay import replay_model_from_options

        return replay_model_from_options(spec.name, spec.options)
    raise ConfigError(f"tier '{spec.name}': unknown provider '{spec.provider}'")
