"""model_tiers: which model runs a step, at what price, and what it cost.

Nothing in this package imports from agents, graphs, tools or evals.
"""

from tierflow.model_tiers.config import (
    DEFAULT_CONFIG,
    TierRunContext,
    apply_run_context,
    config_from_mapping,
    load_tier_config,
)
from tierflow.model_tiers.errors import (
    ConfigError,
    InvalidModelOutput,
    MissingCredential,
    MissingDependency,
    NetworkBlocked,
    TierflowError,
    TierMisconfigured,
    TierUnreachable,
    ToolRefusal,
)
from tierflow.model_tiers.ledger import LedgerSummary, TierTotals, Usage, estimate_tokens, summarize
from tierflow.model_tiers.providers import (
    FunctionProvider,
    ProviderCapabilities,
    ProviderFactory,
    build_chat_model,
    get_provider,
    provider_names,
    register_provider,
)
from tierflow.model_tiers.registry import ModelReply, TierRegistry
from tierflow.model_tiers.secrets import redact, redact_value
from tierflow.model_tiers.spec import (
    ROLES,
    Budget,
    Capabilities,
    EscalationPolicy,
    Role,
    RoutingPolicy,
    TierConfig,
    TierSpec,
)

__all__ = [
    "DEFAULT_CONFIG",
    "ROLES",
    "Budget",
    "Capabilities",
    "ConfigError",
    "EscalationPolicy",
    "InvalidModelOutput",
    "LedgerSummary",
    "MissingCredential",
    "MissingDependency",
    "ModelReply",
    "NetworkBlocked",
    "Role",
    "RoutingPolicy",
    "TierConfig",
    "TierRegistry",
    "TierRunContext",
    "TierSpec",
    "TierMisconfigured",
    "TierTotals",
    "TierUnreachable",
    "TierflowError",
    "ToolRefusal",
    "Usage",
    "apply_run_context",
    "build_chat_model",
    "FunctionProvider",
    "ProviderCapabilities",
    "ProviderFactory",
    "get_provider",
    "provider_names",
    "register_provider",
    "config_from_mapping",
    "estimate_tokens",
    "load_tier_config",
    "redact",
    "redact_value",
    "summarize",
]
