"""The one place that turns a `TierSpec` into a LangChain chat model.

The tier's `provider` names a kind in the catalog (`catalog.py`): a built-in one
(`builtin.py`), one the user registered with `register_provider`, or one an installed
package declares in the entry-point group ``tierflow.providers``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from tierflow.model_tiers.providers import catalog
from tierflow.model_tiers.providers.builtin import DEFAULT_OLLAMA_URL, api_key_for, key_env_of
from tierflow.model_tiers.providers.catalog import *  # noqa: F403 (the catalog's names are this package's)
from tierflow.model_tiers.providers.catalog import get_provider

if TYPE_CHECKING:  # spec.py imports the catalog, and so this package, while it loads
    from langchain_core.language_models import BaseChatModel

    from tierflow.model_tiers.spec import TierSpec

__all__ = ["build_chat_model", "DEFAULT_OLLAMA_URL", "api_key_for", "key_env_of"]
__all__ += catalog.__all__


def build_chat_model(spec: TierSpec, *, env: Mapping[str, str] | None = None) -> BaseChatModel:
    """Build the chat model for one tier. Raises a typed error the user can act on."""
    return get_provider(spec.provider)(spec, os.environ if env is None else env)
