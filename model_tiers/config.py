"""Loading a `TierConfig`, with one explicit precedence: run context > env > file > defaults.

* defaults: `DEFAULT_CONFIG` below (embedded SmolLM2-135M as `slm`, embedded Qwen2.5-Coder-1.5B as `frontier`).
* file: the path given by the caller, else `$TIERFLOW_TIERS`, else `./tiers.toml` if present.
  Tables are merged over the defaults; a file's `[[tiers]]` list replaces the default ladder.
* env: `OPENAI_BASE_URL` sets `base_url` of every `openai` tier, `OLLAMA_HOST` of every
  `ollama` tier, `TIERFLOW_POLICY` the routing policy. `OPENAI_API_KEY` (or the variable a
  tier names in `api_key_env`) is read only when the tier's model is built.
* run context: `TierRunContext`, per run (a LangGraph `context=`, a Studio assistant, a CLI flag).
"""

from __future__ import annotations

import copy
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tierflow.model_tiers.errors import ConfigError
from tierflow.model_tiers.spec import TierConfig

__all__ = [
    "DEFAULT_CONFIG",
    "TierRunContext",
    "load_tier_config",
    "config_from_mapping",
    "apply_run_context",
    "resolve_config_path",
    "shipped_tiers_files",
    "coerce_context",
]

# The default ladder is two real local models run in-process: SmolLM2-135M-Instruct as
# `slm` and Qwen2.5-Coder-1.5B-Instruct (11x larger) as the local `frontier`. Their prices
# are nominal, proportional to size ($0.10 per billion parameters per million input
# tokens, twice that for output), so policy comparisons report a cost that means something
# even though local inference is free at the margin.
DEFAULT_CONFIG: dict[str, Any] = {
    "policy": "tiered",
    "tiers": [
        {
            "name": "slm",
            "provider": "embedded",
            "model": "smollm2-135m-instruct",
            "price_input_per_mtok": 0.0135,
            "price_output_per_mtok": 0.027,
            "max_output_tokens": 256,
            "timeout_s": 30.0,
            "capabilities": {"tools": True, "structured_output": "json_schema", "context_window": 8192},
            "max_concurrency": 1,
        },
        {
            "name": "frontier",
            "provider": "embedded",
            "model": "qwen2.5-coder-1.5b-instruct",
            "price_input_per_mtok": 0.15,
            "price_output_per_mtok": 0.30,
            "max_output_tokens": 384,
            "timeout_s": 90.0,
            "capabilities": {"tools": True, "structured_output": "json_schema", "context_window": 32768},
            "max_concurrency": 1,
        },
    ],
    "roles": {
        "plan": "frontier",
        "classify": "slm",
        "extract": "slm",
        "tool": "slm",
        "respond": "frontier",
        "judge": "frontier",
    },
    # A stronger tier sees only its own rejected answers: shown SmolLM2's rejected
    # extractions, Qwen2.5-1.5B reused their values (see tiers.toml).
    "escalation": {"max_retries": 1, "on_top_failure": "interrupt", "feedback_to_next_tier": False},
    "budget": {"on_exhausted": "stop"},
}

ENV_TIERS_FILE = "TIERFLOW_TIERS"
ENV_POLICY = "TIERFLOW_POLICY"


@dataclass(frozen=True)
class TierRunContext:
    """Per-run overrides: the highest layer of configuration precedence.

    Every field left as None keeps the value from env / file / defaults.
    """

    policy: str | None = None
    role_tiers: dict[str, str] | None = None
    max_cost_usd: float | None = None
    max_frontier_calls: int | None = None
    on_budget_exhausted: str | None = None
    max_retries: int | None = None
    on_top_failure: str | None = None
    confidence_threshold: float | None = None
    # End the run once each of these steps has a verified result (an eval that grades
    # only them need not pay for the rest of the graph).
    stop_after: list[str] | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> TierRunContext:
        # LangGraph builds the context as `TierRunContext(**context)` from whatever a caller
        # passed to invoke / stream / the server: a misspelt field must get this message,
        # not Python's "unexpected keyword argument".
        unknown = sorted(set(kwargs) - {f.name for f in fields(cls)})
        if unknown:
            allowed = ", ".join(f.name for f in fields(cls))
            raise ConfigError(f"unknown run-context fields {unknown}; allowed: {allowed}", source="run context")
        return super().__new__(cls)


def coerce_context(ctx: Any) -> TierRunContext | None:
    """A run context as LangGraph hands it over: the dataclass, a dict (the SDK, Studio) or nothing."""
    if ctx is None or isinstance(ctx, TierRunContext):
        return ctx
    if isinstance(ctx, Mapping):
        # The constructor names unknown fields (the same message LangGraph's coercion gets).
        return TierRunContext(**{str(k): v for k, v in ctx.items()})
    raise ConfigError(f"run context must be a mapping, got {type(ctx).__name__}", source="run context")


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _format_validation_error(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(top level)"
        got = e.get("input")
        shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
        parts.append(f"field '{loc}': {e['msg']}{shown}")
    return "; ".join(parts)


def config_from_mapping(data: Mapping[str, Any], *, source: str = "config") -> TierConfig:
    """Validate a raw mapping (already merged) into a `TierConfig`, naming `source` on error."""
    try:
        return TierConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err), source=source) from None


def resolve_config_path(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    """Which tiers file applies: explicit path > $TIERFLOW_TIERS > ./tiers.toml > none.

    A bare name that is not a file here (``replay_gsm8k_calibrated``) names a tiers file
    shipped in the package (`shipped_tiers_files`)."""
    if path is not None:
        chosen, origin = Path(path), "argument"
    elif env.get(ENV_TIERS_FILE):
        chosen, origin = Path(env[ENV_TIERS_FILE]), f"env:{ENV_TIERS_FILE}"
    else:
        local = Path.cwd() / "tiers.toml"
        return local if local.is_file() else None
    if chosen.is_file():
        return chosen
    shipped = shipped_tiers_files()
    if len(chosen.parts) == 1 and chosen.stem in shipped and chosen.suffix in ("", ".toml"):
        return shipped[chosen.stem]
    names = ", ".join(sorted(shipped))
    raise ConfigError(f"tiers file not found: {chosen} (shipped tiers files, usable by name: {names})", source=origin)


def shipped_tiers_files() -> dict[str, Path]:
    """The tiers files that ship in the package (`tierflow.tiers`), by name without `.toml`."""
    folder = Path(str(resources.files("tierflow.tiers")))
    return {item.stem: item for item in sorted(folder.glob("*.toml"))}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read the tiers file: {err}", source=str(path)) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {err}", source=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a table", source=str(path))
    return data


def _with_calibration_path(data: dict[str, Any], file_path: Path) -> dict[str, Any]:
    """`escalation.calibration` made absolute against the tiers file's folder, and checked:
    a tiers file that names a missing artifact is a misconfiguration, said before any call."""
    escalation = data.get("escalation")
    if not isinstance(escalation, dict) or not isinstance(escalation.get("calibration"), str):
        return data
    named = Path(escalation["calibration"]).expanduser()
    resolved = named if named.is_absolute() else (file_path.parent / named)
    if not resolved.is_file():
        raise ConfigError(
            f"escalation.calibration names {resolved}, which does not exist; run "
            "`tierflow calibrate RUN_DIR --out <that path>` or remove the setting",
            source=str(file_path),
        )
    return {**data, "escalation": {**escalation, "calibration": str(resolved.resolve())}}


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    url_by_provider = {"openai": env.get("OPENAI_BASE_URL"), "ollama": env.get("OLLAMA_HOST")}
    for tier in data.get("tiers", []):
        if isinstance(tier, dict):
            url = url_by_provider.get(tier.get("provider", ""))
            if url:
                if tier.get("provider") == "ollama" and "://" not in url:
                    url = f"http://{url}"
                tier["base_url"] = url
    if env.get(ENV_POLICY):
        data["policy"] = env[ENV_POLICY]
    return data


def load_tier_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    context: TierRunContext | None = None,
) -> TierConfig:
    """Load the effective configuration: defaults, then the file, env, and run context."""
    env = os.environ if env is None else env
    data = copy.deepcopy(DEFAULT_CONFIG)
    source = "defaults"
    file_path = resolve_config_path(path, env)
    if file_path is not None:
        file_data = _with_calibration_path(_read_file(file_path), file_path)
        data = _deep_merge(data, file_data)
        source = str(file_path)
    env_data = _apply_env(data, env)
    if env_data != data:
        used = [v for v in ("OPENAI_BASE_URL", "OLLAMA_HOST", ENV_POLICY) if env.get(v)]
        source = f"{source} + env ({', '.join(used)})"
    config = config_from_mapping(env_data, source=source)
    return apply_run_context(config, context) if context is not None else config


def apply_run_context(config: TierConfig, context: TierRunContext) -> TierConfig:
    """Return `config` with the run context's overrides applied (validated)."""
    data = config.model_dump()
    if context.policy is not None:
        data["policy"] = context.policy
    if context.role_tiers:
        data["roles"] = {**data["roles"], **dict(context.role_tiers)}
    budget = {
        "max_cost_usd": context.max_cost_usd,
        "max_frontier_calls": context.max_frontier_calls,
        "on_exhausted": context.on_budget_exhausted,
    }
    data["budget"].update({k: v for k, v in budget.items() if v is not None})
    escalation = {
        "max_retries": context.max_retries,
        "on_top_failure": context.on_top_failure,
        "confidence_threshold": context.confidence_threshold,
    }
    data["escalation"].update({k: v for k, v in escalation.items() if v is not None})
    return config_from_mapping(data, source="run context")
