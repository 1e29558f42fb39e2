"""Typed configuration: one tier, the ladder of tiers, the escalation policy and budgets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tierflow.model_tiers.errors import ConfigError

if TYPE_CHECKING:
    from tierflow.model_tiers.providers.catalog import ProviderFactory

__all__ = [
    "Provider",
    "StructuredOutputMethod",
    "Role",
    "ROLES",
    "RoutingPolicy",
    "Capabilities",
    "TierSpec",
    "EscalationPolicy",
    "Budget",
    "TierConfig",
]

# A provider kind's name: a built-in one (embedded, ollama, openai, scripted, replay) or one
# registered by the user (model_tiers/providers/catalog.py); checked when a tier is loaded.
Provider = str
# How a tier is asked for structured output; "none": it gives none, so a step with an output
# schema skips the tier on its ladder (agents/loop/ladder.py).
StructuredOutputMethod = Literal["json_schema", "function_calling", "json_mode", "none"]
# A role names what a step does (its tier comes from `roles` in the tiers file). The
# built-in step factories use ROLES, which every config maps; a graph may declare steps of
# its own roles ("summarize", "translate"), mapped the same way.
Role = str
ROLES: tuple[str, ...] = ("plan", "classify", "extract", "tool", "respond", "judge")
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")
RoutingPolicy = Literal["tiered", "all-slm", "all-frontier"]


def _provider_factory(name: str) -> ProviderFactory:
    # Imported on use, so that loading this module never depends on the providers package
    # (which names TierSpec in its signatures) having finished loading.
    from tierflow.model_tiers.providers.catalog import get_provider

    return get_provider(name)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Capabilities(_Strict):
    """What a tier can do; decides how structured output and tools are requested."""

    tools: bool = True
    # llama.cpp's OpenAI server answers HTTP 500 to response_format=json_schema, so the
    # method must be declared per tier rather than assumed.
    structured_output: StructuredOutputMethod = "json_schema"
    context_window: int = Field(default=8192, gt=0)
    logprobs: bool = False
    # "named": the server produces a tool call only when the request names the tool
    # (llama.cpp's server; vLLM without --enable-auto-tool-choice). A free choice among
    # several tools is then asked in two calls (model_tiers/tool_selection.py).
    tool_choice: Literal["auto", "named"] = "auto"


class TierSpec(_Strict):
    """One model tier: where it runs, what it costs and what it can do."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    provider: Provider
    model: str = Field(min_length=1)
    base_url: str | None = None
    # The *name* of the environment variable holding the key, never the key itself.
    api_key_env: str | None = None
    local: bool | None = None
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    timeout_s: float = Field(default=120.0, gt=0)
    max_output_tokens: int = Field(default=512, gt=0)
    price_input_per_mtok: float = Field(default=0.0, ge=0)
    price_output_per_mtok: float = Field(default=0.0, ge=0)
    capabilities: Capabilities = Capabilities()
    max_concurrency: int = Field(default=4, gt=0)
    # After a rate limit, a 5xx, a timeout or a refused connection, calls to this tier fail
    # over at once, without a request, for this long (as LiteLLM's router cools a
    # deployment down). 0 turns it off.
    cooldown_s: float = Field(default=10.0, ge=0)
    # Provider-specific settings (n_ctx / n_threads for embedded, replies for scripted...).
    options: dict[str, Any] = Field(default_factory=dict)
    # A LoRA adapter (GGUF, as `tierflow finetune` writes) applied to `model`; embedded only.
    # Several tiers may share one base model with different adapters.
    adapter: str | None = None
    # "compact": the tier was fine-tuned on the steps' compact prompts (a step that has one,
    # like a classifier, sends it without listing its candidates, and the provider does not
    # describe the output schema), both when training and when serving.
    prompt: Literal["full", "compact"] = "full"
    # False: a step's soft (heuristic) checks only warn on this tier instead of asking a
    # higher tier for a second opinion. The heuristics were made for a general model's
    # mistakes; on a tier fine-tuned on the step they can flag mostly right answers
    # (`python -m tierflow.evals.bench.finetune` measures it). Hard checks always apply.
    soft_checks: bool = True
    # Ask the provider for token log-probabilities (the answer's confidence, see
    # model_tiers/providers/logprobs.py). Off for an endpoint that rejects the parameter.
    logprobs: bool = True

    @field_validator("provider")
    @classmethod
    def _registered_provider(cls, name: str) -> str:
        _provider_factory(name)  # raises ConfigError (a ValueError) naming the known providers
        return name

    @model_validator(mode="after")
    def _default_locality(self) -> TierSpec:
        if self.local is None:
            # Only models on hardware the user controls may see `local_only` data by default.
            object.__setattr__(self, "local", _provider_factory(self.provider).capabilities.local)
        if self.adapter is not None and self.provider != "embedded":
            raise ValueError(
                f"tier '{self.name}': 'adapter' applies to embedded tiers; an ollama tier names the "
                "model created from the adapter's Modelfile (`ollama create NAME -f Modelfile`)"
            )
        return self

    @property
    def model_label(self) -> str:
        """The model as the ledger and reports name it: base model, plus its adapter if any."""
        if self.adapter is None:
            return self.model
        return f"{self.model}+{Path(self.adapter).stem}"

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Cost in USD of one call with these token counts at this tier's prices."""
        return (
            input_tokens * self.price_input_per_mtok + output_tokens * self.price_output_per_mtok
        ) / 1_000_000


class EscalationPolicy(_Strict):
    """What happens after the verifier fails a step."""

    max_retries: int = Field(default=1, ge=0, le=10)
    on_top_failure: Literal["interrupt", "fail"] = "interrupt"
    # A step whose confidence is below this fails the verifier (when the tier reports one).
    confidence_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    judge_tier: str | None = None
    # Whether a stronger tier sees the rejected candidates of the tiers below (and why they
    # failed). It helps a model avoid the same mistake, and costs input tokens on the most
    # expensive tier; off, each tier sees only its own rejected answers.
    feedback_to_next_tier: bool = True
    # A `tierflow calibrate` artifact (agents/calibration.py): per step, a calibrated
    # probability that the slm's answer is right (escalate below a threshold) and a router
    # that starts hopeless inputs higher. A relative path is read from the tiers file's folder.
    calibration: str | None = None


class Budget(_Strict):
    """Per-run spending limits and what to do when one is reached."""

    max_cost_usd: float | None = Field(default=None, ge=0)
    max_frontier_calls: int | None = Field(default=None, ge=0)
    on_exhausted: Literal["stop", "interrupt", "cheaper_only"] = "stop"


class TierConfig(_Strict):
    """The ordered ladder of tiers (cheapest first), the role map and the policies."""

    tiers: list[TierSpec] = Field(min_length=1)
    roles: dict[Role, str]
    policy: RoutingPolicy = "tiered"
    escalation: EscalationPolicy = EscalationPolicy()
    budget: Budget = Budget()

    @model_validator(mode="after")
    def _check_references(self) -> TierConfig:
        names = [t.name for t in self.tiers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"tier names must be unique; repeated: {', '.join(dupes)}")
        for role, tier in self.roles.items():
            if tier not in names:
                raise ValueError(
                    f"role '{role}' points at tier '{tier}', which is not in the ladder "
                    f"({', '.join(names)})"
                )
        missing = [r for r in ROLES if r not in self.roles]
        if missing:
            raise ValueError(f"roles without a tier: {', '.join(missing)}")
        bad = [r for r in self.roles if not _ROLE_NAME.match(r)]
        if bad:
            raise ValueError(f"role names must be lowercase words (a-z, 0-9, _ or -): {bad}")
        judge = self.escalation.judge_tier
        if judge is not None and judge not in names:
            raise ValueError(f"escalation.judge_tier '{judge}' is not in the ladder")
        return self

    # -- the ladder -----------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tiers]

    @property
    def frontier(self) -> TierSpec:
        """The top of the ladder: what 'all-frontier' runs on."""
        return self.tiers[-1]

    @property
    def cheapest(self) -> TierSpec:
        return self.tiers[0]

    def tier(self, name: str) -> TierSpec:
        for spec in self.tiers:
            if spec.name == name:
                return spec
        raise KeyError(f"unknown tier '{name}'; the ladder has: {', '.join(self.names)}")

    def rank(self, name: str) -> int:
        return self.names.index(self.tier(name).name)

    def start_tier(self, role: str) -> str:
        """The tier a step of this role starts on, under the routing policy."""
        if self.policy == "all-slm":
            return self.cheapest.name
        if self.policy == "all-frontier":
            return self.frontier.name
        if role not in self.roles:
            raise ConfigError(
                f"no tier for role '{role}': add `{role} = \"<tier>\"` under [roles] in the tiers file "
                f"(mapped roles: {', '.join(sorted(self.roles))})"
            )
        return self.roles[role]

    def ceiling(self, role: str) -> str:
        """The highest tier a step of this role may escalate to, under the policy."""
        if self.policy == "all-slm":
            return self.cheapest.name
        return self.frontier.name

    def ladder_for(self, role: str, *, local_only: bool = False) -> list[TierSpec]:
        """Tiers a step may run on, in escalation order, from its start to its ceiling."""
        lo, hi = self.rank(self.start_tier(role)), self.rank(self.ceiling(role))
        ladder = self.tiers[lo : hi + 1]
        if local_only:
            # A PII step whose start tier is remote still runs, on the local tiers below.
            ladder = [t for t in ladder if t.local] or [
                t for t in self.tiers[: hi + 1] if t.local
            ]
        return ladder
