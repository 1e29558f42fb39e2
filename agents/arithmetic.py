"""Deterministic arithmetic checks for a worked math solution (the math verifier).

A worked solution states its arithmetic: ``48/2 = 24``, ``3 * $4 = $12``, ``20 x 4 = 80
sheep``, ``(12 / 20) x 100 = 60%`` or calculator notes ``<<48/2=24>>`` (GSM8K style).
`check_solution` finds every such statement, recomputes it with a small AST evaluator
(never ``eval``), and checks that the final answer is a number, that the solution is not
cut off, and that a question which counts things (people, items...) gets a whole number.

Finding statements is heuristic by nature, so it is tuned to avoid false alarms: whatever
cannot be read with confidence (algebra with variables, unit conversions such as
``2 hours = 120 minutes``, mixed numbers, times of day) is skipped, never failed.
Rounding a result to the precision it is written with (``10/3 = 3.33``) is accepted.

`ArithmeticReport.score` (0..1) orders solutions by how well their arithmetic holds up,
so an escalation threshold can be swept; `ArithmeticReport.reason` is the verdict of the
strict checks (None = pass), phrased as feedback a model can act on.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import operator
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, TypeGuard

from tierflow.agents.numbers import parse_number

__all__ = [
    "Statement", "ArithmeticReport", "check_solution", "find_statements", "evaluate_expression",
    "counted_noun", "truncation_reason", "question_numbers_used",
    "UnsafeExpression", "SCORE_PENALTIES",
]

# -- safe evaluation ---------------------------------------------------------------------


class UnsafeExpression(ValueError):
    """The text is not a plain arithmetic expression this evaluator accepts."""


_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv, ast.Pow: operator.pow,
}
_MAX_MAGNITUDE = 1e15
PercentMode = Literal["fraction", "relative", "raw"]


def _eval_node(node: ast.AST, percent: PercentMode) -> float:
    if isinstance(node, ast.Expression):
        return _eval_node(node.body, percent)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval_node(node.operand, percent)
        return -value if isinstance(node.op, ast.USub) else value
    if _is_percent(node):
        value = _eval_node(node.args[0], percent)
        return value if percent == "raw" else value / 100
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _eval_node(node.left, percent)
        # "120 - 25%" read as 120 * (1 - 0.25): how people write a discount or a raise.
        if percent == "relative" and isinstance(node.op, (ast.Add, ast.Sub)) and _is_percent(node.right):
            rate = _eval_node(node.right.args[0], percent) / 100
            return left * (1 + rate if isinstance(node.op, ast.Add) else 1 - rate)
        right = _eval_node(node.right, percent)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
            raise UnsafeExpression("exponent too large to check")
        try:
            value = _BINARY[type(node.op)](left, right)
        except ZeroDivisionError:
            raise UnsafeExpression("division by zero") from None
        if isinstance(value, complex) or not math.isfinite(value) or abs(value) > _MAX_MAGNITUDE:
            raise UnsafeExpression("result out of range")
        return float(value)
    raise UnsafeExpression(f"unsupported syntax: {type(node).__name__}")


def _is_percent(node: ast.AST) -> TypeGuard[ast.Call]:
    """``pct(n)``: how the normaliser writes ``n%``."""
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "pct"
        and len(node.args) == 1 and not node.keywords
    )


_PARSE_LOCK = threading.Lock()


def evaluate_expression(expression: str, *, percent: PercentMode = "fraction") -> float:
    """The value of a normalised arithmetic expression (numbers, + - * / **, parentheses,
    ``pct(n)`` for ``n%``). Raises `UnsafeExpression` for anything else."""
    if len(expression) > 300:
        raise UnsafeExpression("expression too long")
    try:
        # CPython 3.11's parser is not thread-safe for deep expressions ("AST constructor
        # recursion depth mismatch", a SystemError, under concurrent eval cases).
        with _PARSE_LOCK:
            tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise UnsafeExpression(f"not an arithmetic expression: {expression!r}") from None
    return _eval_node(tree, percent)


def _candidate_values(expression: str) -> list[float]:
    """Every reading of an expression: percent signs make ``a - p%`` and ``= 60%`` ambiguous."""
    modes: tuple[PercentMode, ...] = ("fraction", "relative", "raw") if "pct(" in expression else ("fraction",)
    values = []
    for mode in modes:
        try:
            values.append(evaluate_expression(expression, percent=mode))
        except UnsafeExpression:
            continue
    return values


# -- finding statements ------------------------------------------------------------------

_NOTE = re.compile(r"<<([^<>]*)>>")
_SYMBOLS = {"×": "*", "·": "*", "⋅": "*", "∙": "*", "÷": "/", "−": "-", "–": "-", "≈": "~", "\\approx": "~",
            "\\times": "*", "\\cdot": "*", "\\div": "/", "\\%": "%", "\\$": "$"}
# What may follow a word operator: a number, maybe after "(" or a currency mark.
_NEXT = r"(?=\s*(?:⟦[a-z]+:[a-z]+⟧\s*)?\(?\s*\.?\d)"
_WORD_OPERATORS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?<=[\d%)])\s+(?:multiplied by|times)\s+" + _NEXT, re.I), " * "),
    (re.compile(r"(?<=[\d%)])\s+divided by\s+" + _NEXT, re.I), " / "),
    (re.compile(r"(?<=[\d%)])\s+plus\s+" + _NEXT, re.I), " + "),
    (re.compile(r"(?<=[\d%)])\s+minus\s+" + _NEXT, re.I), " - "),
    (re.compile(r"(?<=[\d%)])\s*[xX]\s*" + _NEXT), " * "),
    (re.compile(r"(?<=[\d%)])\s+of\s+" + _NEXT, re.I), " * "),
]
# Words right before a run that mean its first number is an operand of something unread.
# ("x 4.00 / 2" after an unread "3 x $"; "half of 10 + 2"; "three times 4 + 1").
_OPERAND_WORDS = re.compile(
    r"(?:(?:^|\W)(?![aAI]$)[A-Za-z]|§|\btimes|\bplus|\bminus|\bdivided by|\bmultiplied by"
    r"|\b(?:half|third|thirds|quarter|quarters|fourths?|fifths?|twice|double|triple|one|two|three|four|five"
    r"|six|seven|eight|nine|ten)(?:\s+of)?)$"
)
# Units of one kind that convert into each other: "4 feet + 3 inches = 51" mixes two of them,
# and such a statement cannot be recomputed without the conversion, so it is skipped.
_UNIT_KINDS = {
    unit: kind
    for kind, units in {
        "time": "second seconds sec secs minute minutes min mins hour hours hr hrs day days week weeks month months year years",
        "length": "inch inches foot feet ft yard yards mile miles centimeter centimeters cm meter meters metre metres km kilometers",
        "weight": "ounce ounces oz pound pounds lb lbs gram grams g kilogram kilograms kg ton tons",
        "volume": (
            "cup cups pint pints quart quarts gallon gallons liter liters litre litres ml milliliters "
            "tablespoon tablespoons teaspoon teaspoons"
        ),
        "money": "dollar dollars cent cents",
        # "3 dozen * 1.5" may mean 36 * 1.5 or count dozens: ambiguous, see _chain_statements.
        "count": "dozen dozens",
    }.items()
    for unit in units.split()
}
_UNIT_MARK = re.compile(r"⟦([a-z]+):([a-z]+)⟧")


def _mark_units(match: re.Match[str]) -> str:
    """Drop unit words, leaving a mark for a unit of a convertible kind (time, length...)."""
    words = [w.lower().rstrip(".") for w in match.group(1).split()]
    marks = [f"⟦{_UNIT_KINDS[w]}:{w.rstrip('s') or w}⟧" for w in words if w in _UNIT_KINDS]
    return " " + " ".join(marks[:1]) + " "


_RUN = re.compile(r"(?:[\d.+\-*/^()=~\s]|pct\(|⟦[a-z]+:[a-z]+⟧)+")
_PERCENT_CALL = re.compile(r"pct\(([^()]*)\)")
_LEADING_OPERATOR = re.compile(r"^\s*[-+*/^]")
_NUMBER_TEXT = re.compile(r"\d+(?:\.(\d+))?")


@dataclass(frozen=True)
class Statement:
    """One arithmetic claim of a solution, recomputed."""

    text: str
    expression: str
    claimed: float
    computed: float
    ok: bool
    kind: Literal["note", "inline"]
    line: int
    position: int
    # Accepted because the claim is the result rounded to the precision it is written with.
    rounded: bool = False

    def describe(self) -> str:
        shown = _PERCENT_CALL.sub(r"\1%", self.expression)
        return f"'{self.text.strip()}' is wrong: {shown} = {_fmt(self.computed)}, not {_fmt(self.claimed)}"


def _fmt(value: float) -> str:
    return f"{value:.6g}" if not float(value).is_integer() else str(int(value))


# What `_normalise` rewrites, in this order: (pattern, replacement: a template or a function of the match).
_REWRITES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # LaTeX: "\\frac{a}{b}", "\\text{apples}" (a word), spacing and sizing commands.
    (re.compile(r"\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}"), r"((\1)/(\2))"),
    (re.compile(r"\\(?:text|mathrm|textbf)\{([^{}]*)\}"), r" \1 "),
    (re.compile(r"\\(?:left|right|[()\[\],;!]|quad|qquad)"), " "),
    # Markdown / LaTeX escapes: "4 \\* 12", "\\$5"; then "2**3" as a power.
    (re.compile(r"\\([*_$%])"), r"\1"),
    (re.compile(r"\*\*"), "^"),
    # Thousands separators ("1,250"), currency marks, and a sentence's full stop.
    (re.compile(r"(?<=\d),(?=\d{3}(?!\d))"), ""),
    (re.compile(r"[$€£]\s*(?=[\d.(])"), " ⟦money:dollar⟧ "),
    (re.compile(r"\.(?=\s|$)"), " ; "),
    # A word label in parentheses after a number: "160 (Toulouse) + 80 (Charleston)".
    (re.compile(r"\(\s*[A-Za-z][^()\d=<>]*\)"), " "),
    *_WORD_OPERATORS,
    # A single letter glued to or right after a number is a variable ("2x", "3 y"): poison.
    (re.compile(r"(?<=[\d)])\s*[A-Za-z](?![A-Za-z'’])"), " § "),
    # Unit words between a number and an operator or '=': "15 miles + 120 miles = 135 miles".
    (re.compile(r"(?<=[\d%)])\s*((?:[A-Za-z][A-Za-z'’\-]+\.?\s*){1,3})(?=[-+*/^=~)])"), _mark_units),
    (re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*%"), r"pct(\1)"),
    # "12.8 / 2/5": a fraction written tight inside spaced arithmetic binds first.
    (re.compile(r"(?<![\d.)/^])(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)(?![\d.(/^])"), r"(\1/\2)"),
    # "3(4 + 5)": a number right before a parenthesis multiplies it.
    (re.compile(r"(?<=[\d)])\s*(?=\()"), "*"),
)


def _normalise(text: str) -> str:
    """Rewrite a line so its arithmetic is Python syntax; words that cannot be read stay."""
    for symbol, operator_text in _SYMBOLS.items():
        text = text.replace(symbol, operator_text)
    for pattern, rewrite in _REWRITES:
        text = pattern.sub(rewrite, text)
    return text


def _units_in(segment: str) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    for kind, unit in _UNIT_MARK.findall(segment):
        kinds.setdefault(kind, set()).add(unit)
    return kinds


def _clean_segment(segment: str) -> str:
    segment = _UNIT_MARK.sub(" ", segment)
    segment = re.sub(r"\s+", " ", segment).strip().rstrip(".").strip()
    # Unbalanced parentheses at the edges belong to the surrounding prose: "(so 3 + 4 = 7)".
    while segment.count("(") > segment.count(")") and segment.startswith("("):
        segment = segment[1:].strip()
    while segment.count(")") > segment.count("(") and segment.endswith(")"):
        segment = segment[:-1].strip()
    return segment.replace("^", "**")


def _has_operator(expression: str) -> bool:
    body = expression.lstrip("-+ (")
    return bool(re.search(r"[-+*/]", body))


def _decimals(segment: str) -> int | None:
    """Decimals a plain number is written with; None when the segment is not one number."""
    match = _NUMBER_TEXT.fullmatch(segment.strip().lstrip("-").replace("pct(", "").rstrip(")"))
    return len(match.group(1) or "") if match else None


def _compare(left: str, right: str, approximate: bool) -> tuple[bool, bool, float, float] | None:
    """(ok, rounded, computed, claimed) for "left = right"; None when either side is unreadable."""
    lefts, rights = _candidate_values(left), _candidate_values(right)
    if not lefts or not rights:
        return None
    for computed in lefts:
        for claimed in rights:
            if math.isclose(computed, claimed, rel_tol=1e-6, abs_tol=1e-9):
                return True, False, computed, claimed
    decimals = _decimals(right)
    tolerance = 0.02 if approximate else 0.0
    for computed in lefts:
        for claimed in rights:
            if decimals is not None and abs(computed - claimed) < 10.0 ** (-decimals) and not float(computed).is_integer():
                return True, True, computed, claimed
            if tolerance and math.isclose(computed, claimed, rel_tol=tolerance):
                return True, True, computed, claimed
    # Report the closest reading: "(12 / 20) x 100 = 55%" is 60 against 55, not against 0.55.
    computed, claimed = min(((c, r) for c in lefts for r in rights), key=lambda pair: abs(pair[0] - pair[1]))
    return False, False, computed, claimed


def _chain_statements(run: str, preceded_by_word: bool, line: int, offset: int) -> Iterator[Statement]:
    parts = re.split(r"([=~])", run)
    segments, relations = parts[0::2], parts[1::2]
    for i, relation in enumerate(relations):
        raw_left, raw_right = segments[i], segments[i + 1]
        left_units = _units_in(raw_left)
        if any(len(units) > 1 for units in left_units.values()):
            continue
        left, right = _clean_segment(raw_left), _clean_segment(raw_right)
        if not left or not right or not any(ch.isdigit() for ch in right):
            continue
        # "2x + 3 = 15" leaves "+ 3" here: the left side began before this run.
        if _LEADING_OPERATOR.match(left) or (i == 0 and preceded_by_word):
            continue
        # "2 hours = 120 minutes": a single number on the left is a conversion, not arithmetic.
        if not _has_operator(left):
            continue
        if _LEADING_OPERATOR.match(right) or right.rstrip()[-1:] in "+-*/":
            continue
        result = _compare(left, right, approximate=relation == "~")
        if result is None:
            continue
        ok, rounded, computed, claimed = result
        if not ok and "count" in left_units:
            continue
        if not ok and _has_operator(right):
            # "5 * 4 = 20 * 2 = 40" continues from the left's result, and "4 dozens + 2 =
            # 4*12 + 2" restates it in other units: an expression on the right is checked
            # against the next link of the chain, never failed here.
            continue
        text = _PERCENT_CALL.sub(r"\1%", f"{left} {'=' if relation == '=' else '≈'} {right}")
        yield Statement(text=text, expression=left, claimed=claimed, computed=computed, ok=ok,
                        kind="inline", line=line, position=offset + len("".join(parts[: 2 * i + 1])), rounded=rounded)


def _note_statements(line_text: str, line: int) -> Iterator[Statement]:
    for match in _NOTE.finditer(line_text):
        body = match.group(1)
        if "=" not in body:
            continue
        normalised = _normalise(body)
        if "§" in normalised or re.search(r"[A-Za-z]", normalised.replace("pct(", "")):
            continue
        for statement in _chain_statements(normalised, False, line, match.start()):
            yield Statement(**{**statement.__dict__, "kind": "note", "text": f"<<{body}>>", "position": match.start()})


def _logical_lines(solution: str) -> list[str]:
    """Lines, with a line that starts with '=' joined to the one before (multi-line chains)."""
    lines: list[str] = []
    for raw in solution.splitlines():
        if lines and raw.lstrip().startswith(("=", "\\approx", "≈")):
            lines[-1] = f"{lines[-1]} {raw.strip()}"
        else:
            lines.append(raw)
    return lines


def find_statements(solution: str) -> list[Statement]:
    """Every arithmetic statement of `solution` that can be read with confidence, in order."""
    found: list[Statement] = []
    for number, line_text in enumerate(_logical_lines(solution)):
        notes = list(_note_statements(line_text, number))
        found.extend(notes)
        # Notes are blanked (same length) so the prose around them reads "20 x 4 = 80 sheep".
        prose = _NOTE.sub(lambda m: " " * len(m.group(0)), line_text)
        prose = re.sub(r"<<[^<>]*$", "", prose)  # a note cut off mid-way is not arithmetic
        normalised = _normalise(prose)
        seen = {(n.expression.replace(" ", ""), n.claimed) for n in notes}
        for run in _RUN.finditer(normalised):
            if "=" not in run.group(0) and "~" not in run.group(0):
                continue
            before = normalised[: run.start()].rstrip()
            preceded_by_word = bool(_OPERAND_WORDS.search(before))
            for statement in _chain_statements(run.group(0), preceded_by_word, number, run.start()):
                key = (statement.expression.replace(" ", ""), statement.claimed)
                if key in seen:
                    continue
                seen.add(key)
                found.append(statement)
    return sorted(found, key=lambda s: (s.line, s.position))


# -- the final answer ----------------------------------------------------------------------

def truncation_reason(solution: str) -> str | None:
    """Why the solution looks cut off (an unclosed calculator note, a dangling operator or
    a number broken mid-way at the very end), or None."""
    tail = solution.rstrip()
    if not tail:
        return "the solution is empty"
    if re.search(r"<<[^<>]*$", tail):
        return "the solution ends inside an unclosed calculator note"
    if re.search(r"[-+*/=(×]\s*$", tail):
        return "the solution ends in the middle of a calculation"
    if re.search(r"\d,\d{1,2}$", tail):
        return f"the solution ends in a broken number ('{tail[-8:].split()[-1]}')"
    return None


# Nouns after "how many" that are measures, not counts: a fractional answer is fine there.
_MEASURES = frozenset(
    [
        "dollars", "dollar", "cents", "cent", "euros", "pounds", "pound", "ounces", "ounce", "grams", "gram", "kilograms", "kilogram",
        "kg", "tons", "ton", "liters", "litres", "liter", "litre", "milliliters", "ml", "gallons", "gallon", "quarts", "pints", "cups",
        "cup", "tablespoons", "teaspoons", "seconds", "minutes", "minute", "hours", "hour", "days", "day", "weeks", "week", "months",
        "month", "years", "year", "decades", "miles", "mile", "kilometers", "kilometres", "km", "meters", "metres", "meter", "feet",
        "foot", "inches", "inch", "yards", "yard", "centimeters", "cm", "square", "cubic", "degrees", "degree", "percent",
        "percentage", "points", "calories", "times", "mph",
    ]
)
_COMPARATIVES = frozenset(["more", "fewer", "less", "extra", "additional", "total", "different"])
_HOW_MANY = re.compile(r"\bhow\s+many\s+((?:[A-Za-z][A-Za-z'’-]*\s+){0,3})", re.I)


def counted_noun(question: str) -> str | None:
    """The thing the question counts ("How many sheep ..." -> "sheep"), or None when it asks
    for a measure (money, time, length...), an amount ("how much") or nothing countable."""
    matches = list(_HOW_MANY.finditer(question))
    if not matches:
        return None
    words = [w.lower().strip("'’") for w in matches[-1].group(1).split()]
    words = [w for w in words if w not in _COMPARATIVES]
    if not words:
        return None
    noun = words[0]
    if noun in _MEASURES or noun in {"of", "do", "does", "did", "is", "are", "will", "would", "can", "could", "has", "have", "had"}:
        return None
    return noun


# -- the report ----------------------------------------------------------------------------

_QUESTION_NUMBER = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")

# How much each soft signal lowers the score of a solution that passes the strict checks.
# Set by hand and checked on the visible even half of RouteLLM's GSM8K file (a dev set):
# among the 584 Mixtral answers that pass the strict checks, 29% are wrong; of those whose
# final answer is not the last computed result, 68% (25/37); with no checkable arithmetic,
# 55% (6/11); that leave a number of the question unused, 53% (37/70).
SCORE_PENALTIES = {
    "final_not_last_result": 0.25,
    "no_arithmetic_to_check": 0.15,
    "question_numbers_unused": 0.25,  # times the fraction of the question's numbers unused
    "fraction_for_a_count": 0.5,
}


def question_numbers_used(question: str, solution: str) -> float:
    """Fraction of the question's numbers that the solution mentions (1.0 when it has none).

    A percentage may reappear as a fraction ("30%" as 0.3) and the other way round."""
    asked = {float(n.replace(",", "")) for n in _QUESTION_NUMBER.findall(question)}
    if not asked:
        return 1.0
    written = {float(n.replace(",", "")) for n in _QUESTION_NUMBER.findall(_NOTE.sub(" ", solution))}
    seen = written | {n * 100 for n in written} | {n / 100 for n in written}
    used = [n for n in asked if any(math.isclose(n, m, rel_tol=1e-9, abs_tol=1e-9) for m in seen)]
    return len(used) / len(asked)


@dataclass(frozen=True)
class ArithmeticReport:
    """The verdict on one worked solution: the strict `reason` and the graded `score`."""

    statements: tuple[Statement, ...]
    final_answer: float | None
    last_result: float | None
    final_matches_last: bool | None
    counted: str | None
    whole_number_ok: bool
    truncated: str | None
    question_coverage: float
    reason: str | None
    score: float

    @property
    def checked(self) -> int:
        return len(self.statements)

    @property
    def wrong(self) -> tuple[Statement, ...]:
        return tuple(s for s in self.statements if not s.ok)

    @property
    def recompute_fraction(self) -> float:
        """Share of statements that recompute (1.0 when there is none to check)."""
        return 1.0 if not self.statements else 1 - len(self.wrong) / len(self.statements)

    @property
    def passed(self) -> bool:
        return self.reason is None


def _score(report: ArithmeticReport) -> float:
    """0 when there is no numeric final answer or the text is cut off; else the share of
    statements that recompute, lowered by each soft signal (`SCORE_PENALTIES`)."""
    if report.final_answer is None or report.truncated:
        return 0.0
    p = SCORE_PENALTIES
    penalty = (
        p["final_not_last_result"] * (report.final_matches_last is False)
        + p["no_arithmetic_to_check"] * (not report.statements)
        + p["question_numbers_unused"] * (1.0 - report.question_coverage)
        + p["fraction_for_a_count"] * (not report.whole_number_ok)
    )
    return round(max(0.0, report.recompute_fraction * (1.0 - penalty)), 6)


def check_solution(solution: str, final_answer: str | None, question: str = "") -> ArithmeticReport:
    """Recompute a worked solution and judge its final answer.

    Strict checks, in order (the first failure is the `reason`): the final answer is a
    number; the solution is not cut off; every statement recomputes; a question that
    counts things gets a whole number. The soft signals (final answer is not the last
    computed result, nothing to check, question numbers unused) only lower the `score`:
    each also occurs in right answers ("so 8 are left" after "12 - 4 = 8" is fine).
    """
    solution = solution or ""
    statements = tuple(find_statements(solution))
    final = parse_number(final_answer)
    last = statements[-1].claimed if statements else None
    matches_last = None if last is None or final is None else math.isclose(last, final, rel_tol=1e-6, abs_tol=1e-6)
    counted = counted_noun(question) if question else None
    whole_ok = not (counted and final is not None and not float(final).is_integer())
    truncated = truncation_reason(solution)
    wrong = [s for s in statements if not s.ok]
    reason: str | None = None
    shown = (final_answer or "").strip()[:60]
    if final is None:
        reason = (
            f"the final answer '{shown}' is not a number; give it as a number only"
            if shown
            else "there is no final answer; give the final answer as a number"
        )
    elif truncated:
        reason = f"{truncated}; write the complete solution"
    elif wrong:
        more = f" (and {len(wrong) - 1} more wrong calculation(s))" if len(wrong) > 1 else ""
        reason = f"{wrong[0].describe()}{more}; redo the arithmetic"
    elif not whole_ok:
        reason = f"the question asks how many {counted}, a count, but the answer {_fmt(final)} is not a whole number"
    coverage = question_numbers_used(question, solution) if question else 1.0
    report = ArithmeticReport(statements, final, last, matches_last, counted, whole_ok, truncated, coverage, reason, score=0.0)
    return dataclasses.replace(report, score=_score(report))
