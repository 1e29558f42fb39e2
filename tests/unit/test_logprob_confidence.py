"""Token log-probabilities reduced to one confidence (model_tiers/providers/logprobs.py)."""

from __future__ import annotations

import math

from tierflow.model_tiers.providers.logprobs import answer_confidence, confidence_from_openai_logprobs, value_char_mask


def test_value_characters_exclude_keys_and_punctuation() -> None:
    text = '{"label": "billing", "n": 12, "ok": true}'
    mask = value_char_mask(text)
    assert mask is not None
    marked = "".join(c for c, m in zip(text, mask, strict=True) if m)
    assert marked == "billing12true"
    assert value_char_mask("plain words") is None
    assert value_char_mask('{"cut": "off') is None


def test_structured_answer_confidence_is_the_least_likely_value_token() -> None:
    tokens = [('{"', 0.0), ("label", math.log(0.2)), ('":', 0.0), (' "', 0.0), ("bill", math.log(0.6)), ("ing", math.log(0.9)), ('"}', 0.0)]
    # The key's low probability does not count (the schema forced it); the value's does.
    assert math.isclose(answer_confidence(tokens) or 0, 0.6)


def test_plain_text_confidence_is_the_geometric_mean() -> None:
    tokens = [("Hello", math.log(0.5)), (" there", math.log(0.5))]
    assert math.isclose(answer_confidence(tokens) or 0, 0.5)
    assert answer_confidence([]) is None


def test_openai_and_ollama_shapes() -> None:
    block = {"content": [{"token": "Hi", "logprob": -0.1, "top_logprobs": []}]}
    assert math.isclose(confidence_from_openai_logprobs(block) or 0, math.exp(-0.1))

    class Logprob:  # the ollama client's model: attributes, not keys
        token = "Hi"
        logprob = -0.2

    assert math.isclose(confidence_from_openai_logprobs([Logprob()]) or 0, math.exp(-0.2))
    assert confidence_from_openai_logprobs(None) is None
    assert confidence_from_openai_logprobs({"content": [{"token": "x", "logprob": "bad"}]}) is None
