"""Reading numeric answers out of free text (math word problems).

Model answers end in many styles: ``#### 18`` (GSM8K), ``The answer is 18.``,
``\\boxed{18}``, ``$1,234.50``, or just a last sentence with the number in it. GSM8K
reference solutions and Mixtral's recorded answers also embed calculator annotations
``<<9*2=18>>`` which must not be mistaken for the answer.

The math verifier (`agents.arithmetic`), the GSM8K loader and numeric evaluators (`evals`)
and replay tiers (`options.final_number = "tierflow.agents.numbers:extract_final_number"`)
all read numbers here.
"""

from __future__ import annotations

import re

__all__ = ["parse_number", "extract_final_number"]

# A number that is not the tail of a word or identifier ("W2378156", "x2") nor the
# fractional part of a longer number; optional sign, currency, thousands commas, decimals.
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>-)?[$€£]?(?P<digits>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
)
_CALCULATOR_ANNOTATION = re.compile(r"<<[^<>]*>>")
_ANSWER_PHRASE = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:|=)", re.IGNORECASE)
_FRACTION = re.compile(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}|(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)")
_PLAIN = re.compile(r"^\s*[-+]?\s*[$€£]?\s*(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?\s*%?\s*\.?\s*$")


def _to_float(match: re.Match[str]) -> float:
    value = float(match["digits"].replace(",", ""))
    return -value if match["sign"] else value


def parse_number(text: str | None) -> float | None:
    """A whole string read as one number (``"$1,234.50"`` -> 1234.5, ``"18.0"`` -> 18.0,
    ``"-3"`` -> -3.0, ``"60%"`` -> 60.0); None when it is empty or anything else."""
    if text is None or not _PLAIN.match(text) or not any(ch.isdigit() for ch in text):
        return None
    cleaned = re.sub(r"[\s$€£,%+]", "", text).rstrip(".")
    try:
        return float(cleaned)
    except ValueError:
        return None


def _last_number(text: str) -> float | None:
    matches = list(_NUMBER.finditer(text))
    return _to_float(matches[-1]) if matches else None


def _first_number(text: str) -> float | None:
    match = _NUMBER.search(text)
    return _to_float(match) if match else None


def _boxed_content(text: str) -> str | None:
    """The content of the last ``\\boxed{...}``, braces matched."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth = 0
    begin = start + len("\\boxed{")
    for position in range(begin - 1, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:position]
    return None


def _number_in_box(content: str) -> float | None:
    fraction = _FRACTION.search(content)
    if fraction:
        numerator, denominator = (fraction[1], fraction[2]) if fraction[1] is not None else (fraction[3], fraction[4])
        top, bottom = parse_number(numerator), parse_number(denominator)
        if top is not None and bottom:
            return top / bottom
    return _last_number(content)


def extract_final_number(text: str | None) -> float | None:
    """The final numeric answer of a worked solution, or None when it has no number.

    Priority: the last ``\\boxed{}``; the number after the last ``####``; the first number
    after the last "answer is"/"answer:"; otherwise the last number in the text.
    """
    if not text:
        return None
    cleaned = _CALCULATOR_ANNOTATION.sub("", text)
    boxed = _boxed_content(cleaned)
    if boxed is not None:
        value = _number_in_box(boxed)
        if value is not None:
            return value
    if "####" in cleaned:
        value = _first_number(cleaned.rsplit("####", 1)[1])
        if value is not None:
            return value
    phrases = list(_ANSWER_PHRASE.finditer(cleaned))
    if phrases:
        value = _first_number(cleaned[phrases[-1].end():])
        if value is not None:
            return value
    return _last_number(cleaned)
