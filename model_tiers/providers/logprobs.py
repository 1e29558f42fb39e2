"""A model's confidence in its answer, from the log-probabilities of the tokens it chose.

Every provider that exposes token log-probabilities (llama.cpp in-process, an
OpenAI-compatible server's ``logprobs``, Ollama's ``logprobs``) reduces them here, so one
answer gets the same number wherever it ran:

* a structured (JSON) answer: the least probable token among the *value* tokens (the
  characters inside string values, numbers and literals; keys and punctuation are forced by
  the schema and say nothing about the answer). For a label step whose answer is one short
  string this is, to within a token, the probability of the chosen label's first token,
  which is where the model makes its choice;
* a plain-text answer: the geometric mean token probability (one low token in a long reply
  is normal and says little).

The number is the model's own distribution before any grammar masking, so a constrained
decode that forced a token the model did not want shows up as low confidence: that is the
signal wanted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

__all__ = ["TokenLogprob", "value_char_mask", "answer_confidence", "confidence_from_openai_logprobs"]

# (token text, natural-log probability)
TokenLogprob = tuple[str, float]


def value_char_mask(text: str) -> list[bool] | None:
    """Which characters of a JSON text belong to values (not keys, not punctuation or
    whitespace). None when `text` is not JSON (the caller treats it as plain text)."""
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return None
    try:
        json.loads(stripped)
    except ValueError:
        return None
    mask = [False] * len(text)
    # A string is a key when the next non-space character after it is ':'.
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            end = min(j, n - 1)
            k = end + 1
            while k < n and text[k] in " \t\r\n":
                k += 1
            if not (k < n and text[k] == ":"):
                for c in range(i + 1, end):
                    mask[c] = True
            i = end + 1
        elif ch in "-0123456789tfn":
            j = i
            while j < n and text[j] not in ",]} \t\r\n":
                mask[j] = True
                j += 1
            i = j
        else:
            i += 1
    return mask


def answer_confidence(tokens: Sequence[TokenLogprob]) -> float | None:
    """The confidence of an answer given its chosen tokens (see the module docstring);
    None when there are no tokens to judge."""
    if not tokens:
        return None
    text = "".join(t for t, _ in tokens)
    mask = value_char_mask(text)
    if mask is None:
        mean = sum(lp for _, lp in tokens) / len(tokens)
        return _probability(mean)
    value_logprobs: list[float] = []
    offset = 0
    for token, logprob in tokens:
        span = mask[offset : offset + len(token)]
        offset += len(token)
        if any(span):
            value_logprobs.append(logprob)
    if not value_logprobs:
        return None
    return _probability(min(value_logprobs))


def confidence_from_openai_logprobs(logprobs: object) -> float | None:
    """`answer_confidence` of an OpenAI-shaped ``logprobs`` block (``{"content": [{"token",
    "logprob", ...}]}``, or the bare list Ollama returns); None when there is none."""
    entries = logprobs.get("content") if isinstance(logprobs, dict) else logprobs
    if not isinstance(entries, list):
        return None
    tokens: list[TokenLogprob] = []
    for entry in entries:
        # A dict from an HTTP body, or the ollama client's `Logprob` model.
        token = entry.get("token") if isinstance(entry, dict) else getattr(entry, "token", None)
        logprob = entry.get("logprob") if isinstance(entry, dict) else getattr(entry, "logprob", None)
        if not isinstance(logprob, int | float) or isinstance(logprob, bool):
            return None
        tokens.append((str(token or ""), float(logprob)))
    return answer_confidence(tokens)


def _probability(logprob: float) -> float:
    return min(1.0, max(0.0, math.exp(logprob)))
