"""A ladder of replay tiers (recorded answers) for the replay and recorded-format tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tierflow.model_tiers import ROLES, TierRegistry, config_from_mapping

__all__ = ["replay_registry"]


def replay_registry(ladder: Sequence[tuple[str, Mapping[str, object], float, float]]) -> TierRegistry:
    """Replay tiers, cheapest first: (tier name, its options, USD per million input and output
    tokens). Every role starts on the first tier."""
    tiers = [
        {"name": name, "provider": "replay", "model": options["model"], "options": dict(options),
         "price_input_per_mtok": price_in, "price_output_per_mtok": price_out}
        for name, options, price_in, price_out in ladder
    ]
    return TierRegistry(config_from_mapping({"tiers": tiers, "roles": dict.fromkeys(ROLES, ladder[0][0])}), env={})
