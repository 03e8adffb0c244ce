"""A small PromQL parser for checking deploy/monitoring (no promtool here), and its tests.

It covers the language the alert rules and the dashboard use: selectors with matchers, range
vectors, subqueries, offset, functions (checked by name, argument count and types),
aggregations with by/without, binary operators with precedence, bool, on/ignoring and
group_left/group_right. It rejects what Prometheus would reject in that subset (an unknown
function, a range vector where an instant vector belongs, unbalanced brackets, a selector
without a metric name or a non-empty matcher, ...). Besides the verdict it returns the
selectors of an expression and, where it can tell, the labels its result carries, so that
the tests can compare both with a real /metrics page and with the rules' annotations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

# ---------------------------------------------------------------------------- lexer

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+)(?![\w.])
  | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`[^`]*`)
  | (?P<ident>[a-zA-Z_][a-zA-Z0-9_:]*)
  | (?P<op>==|!=|<=|>=|=~|!~|[-+*/%^<>=(){}\[\],:@])
    """,
    re.VERBOSE,
)

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "atan2"}  # fmt: skip


@dataclass(frozen=True)
class Token:
    kind: str  # duration, number, string, ident, op, end
    text: str
    at: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        found = _TOKEN.match(text, position)
        if found is None:
            raise PromQLError(f"unexpected character {text[position]!r} at {position}")
        kind = found.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append(Token(kind, found.group(), position))
        position = found.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


class PromQLError(ValueError):
    pass


# ---------------------------------------------------------------------------- types and tables

SCALAR, VECTOR, MATRIX, STRING = "scalar", "instant vector", "range vector", "string"


def _names(text: str) -> list[str]:
    return text.split()


# name: (argument types, how many of the last ones are optional, variadic last, result)
_F = tuple[tuple[str, ...], int, bool, str]
FUNCTIONS: dict[str, _F] = {
    **{
        name: ((VECTOR,), 0, False, VECTOR)
        for name in _names(
            "abs ceil floor exp ln log2 log10 sqrt sgn absent timestamp sort sort_desc "
            "histogram_count histogram_sum deg rad "
        )
    },
    **{
        name: ((MATRIX,), 0, False, VECTOR)
        for name in _names(
            "rate irate increase delta idelta deriv changes resets avg_over_time "
            "min_over_time max_over_time sum_over_time count_over_time stddev_over_time "
            "stdvar_over_time last_over_time present_over_time absent_over_time "
        )
    },
    **{
        name: ((VECTOR,), 1, False, VECTOR)
        for name in _names(
            "minute hour day_of_month day_of_week day_of_year days_in_month month year "
        )
    },
    "quantile_over_time": ((SCALAR, MATRIX), 0, False, VECTOR),
    "predict_linear": ((MATRIX, SCALAR), 0, False, VECTOR),
    "holt_winters": ((MATRIX, SCALAR, SCALAR), 0, False, VECTOR),
    "histogram_quantile": ((SCALAR, VECTOR), 0, False, VECTOR),
    "clamp": ((VECTOR, SCALAR, SCALAR), 0, False, VECTOR),
    "clamp_min": ((VECTOR, SCALAR), 0, False, VECTOR),
    "clamp_max": ((VECTOR, SCALAR), 0, False, VECTOR),
    "round": ((VECTOR, SCALAR), 1, False, VECTOR),
    "scalar": ((VECTOR,), 0, False, SCALAR),
    "vector": ((SCALAR,), 0, False, VECTOR),
    "time": ((), 0, False, SCALAR),
    "pi": ((), 0, False, SCALAR),
    "label_replace": ((VECTOR, STRING, STRING, STRING, STRING), 0, False, VECTOR),
    "label_join": ((VECTOR, STRING, STRING, STRING), 0, True, VECTOR),
}
AGGREGATIONS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "group", "topk",
                "bottomk", "quantile", "count_values", "limitk", "limit_ratio"}  # fmt: skip
PARAMETERISED = {"topk": SCALAR, "bottomk": SCALAR, "quantile": SCALAR,
                 "count_values": STRING, "limitk": SCALAR, "limit_ratio": SCALAR}  # fmt: skip
# Lowest to highest; ^ is right-associative.
PRECEDENCE = [
    {"or"},
    {"and", "unless"},
    {"==", "!=", "<=", ">=", "<", ">"},
    {"+", "-"},
    {"*", "/", "%", "atan2"},
    {"^"},
]
COMPARISONS = PRECEDENCE[2]
SET_OPERATORS = {"and", "or", "unless"}


@dataclass(frozen=True)
class Selector:
    metric: str | None
    matchers: tuple[tuple[str, str, str], ...]  # (label, operator, value)

    def label_names(self) -> set[str]:
        return {label for label, _, _ in self.matchers if label != "__name__"}


@dataclass
class Parsed:
    """What the tests need to know about an expression."""

    type: str
    selectors: list[Selector] = field(default_factory=list)
    # Labels the result is known to carry at most (None: not known, e.g. a bare selector).
    labels: frozenset[str] | None = None
    # Labels named in by/without/on/ignoring/group_*: they must exist on the series.
    grouping: set[str] = field(default_factory=set)
    # A bare selector (possibly with offset): the only thing a range [5m] may follow.
    plain: bool = False
    # Where `labels` is not known: labels the result surely lacks (`without`, le after
    # histogram_quantile).
    dropped: frozenset[str] = frozenset()


# ---------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.index = 0

    # --- token helpers

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.token
        self.index += 1
        return token

    def at(self, *texts: str) -> bool:
        return self.token.kind in ("op", "ident") and self.token.text in texts

    def expect(self, text: str) -> Token:
        if not self.at(text):
            raise PromQLError(f"expected {text!r} at {self.token.at}, found {self.token.text!r}")
        return self.take()

    def expect_kind(self, kind: str) -> Token:
        if self.token.kind != kind:
            raise PromQLError(f"expected a {kind} at {self.token.at}, found {self.token.text!r}")
        return self.take()

    # --- grammar

    def parse(self) -> Parsed:
        result = self.binary(0)
        if self.token.kind != "end":
            raise PromQLError(f"unexpected {self.token.text!r} at {self.token.at}")
        return result

    def binary(self, level: int) -> Parsed:
        if level == len(PRECEDENCE):
            return self.unary()
        left = self.binary(level + 1)
        while self.at(*PRECEDENCE[level]):
            operator = self.take().text
            returns_bool = operator in COMPARISONS and self.at("bool")
            if returns_bool:
                self.take()
            grouping, matching = self.vector_matching()
            # ^ is right-associative: its right side is parsed at the same level again.
            right = self.binary(level if operator == "^" else level + 1)
            left = self.combine(operator, returns_bool, left, right, grouping, matching)
        return left

    def vector_matching(self) -> tuple[set[str], tuple[str, set[str]] | None]:
        """on(...)/ignoring(...) and group_left/group_right(...) after an operator."""
        grouping: set[str] = set()
        matching: tuple[str, set[str]] | None = None
        if self.at("on", "ignoring"):
            kind = self.take().text
            labels = self.label_list()
            grouping |= labels
            matching = (kind, labels)
            if self.at("group_left", "group_right"):
                self.take()
                if self.at("("):
                    grouping |= self.label_list()
        return grouping, matching

    def combine(
        self,
        operator: str,
        returns_bool: bool,
        left: Parsed,
        right: Parsed,
        grouping: set[str],
        matching: tuple[str, set[str]] | None,
    ) -> Parsed:
        for side in (left, right):
            if side.type not in (SCALAR, VECTOR):
                raise PromQLError(f"operator {operator} needs instant vectors or scalars")
        if operator in SET_OPERATORS and SCALAR in (left.type, right.type):
            raise PromQLError(f"set operator {operator} needs instant vectors on both sides")
        if matching is not None and SCALAR in (left.type, right.type):
            raise PromQLError("vector matching between a vector and a scalar")
        result_type = VECTOR if VECTOR in (left.type, right.type) else SCALAR
        if result_type == SCALAR and operator in COMPARISONS and not returns_bool:
            raise PromQLError("comparisons between scalars need bool")
        kept = left if left.type == VECTOR else right
        labels, dropped = kept.labels, kept.dropped
        if operator == "or" and left.labels is not None and right.labels is not None:
            labels = left.labels | right.labels
        elif operator == "or":
            labels, dropped = None, left.dropped & right.dropped
        return Parsed(
            result_type,
            left.selectors + right.selectors,
            labels,
            left.grouping | right.grouping | grouping,
            dropped=dropped,
        )

    def unary(self) -> Parsed:
        if self.at("-", "+"):
            self.take()
            operand = self.unary()
            if operand.type not in (SCALAR, VECTOR):
                raise PromQLError("unary minus needs an instant vector or a scalar")
            return operand
        return self.postfix(self.primary())

    def postfix(self, inner: Parsed) -> Parsed:
        while True:
            if self.at("["):
                inner = self.range_or_subquery(inner)
            elif self.at("offset"):
                self.take()
                if self.at("-"):
                    self.take()
                self.expect_kind("duration")
                if inner.type not in (VECTOR, MATRIX):
                    raise PromQLError("offset needs a selector")
            else:
                return inner

    def range_or_subquery(self, inner: Parsed) -> Parsed:
        self.expect("[")
        self.duration()
        if self.at(":"):
            self.take()
            if not self.at("]"):
                self.duration()
            self.expect("]")
            if inner.type != VECTOR:
                raise PromQLError("a subquery needs an instant vector")
            return Parsed(
                MATRIX, inner.selectors, inner.labels, inner.grouping, dropped=inner.dropped
            )
        self.expect("]")
        if not inner.plain:
            raise PromQLError("a range needs a plain selector (use a subquery: [5m:1m])")
        return Parsed(MATRIX, inner.selectors, inner.labels, inner.grouping)

    def duration(self) -> None:
        self.expect_kind("duration")

    def primary(self) -> Parsed:
        token = self.token
        if self.at("("):
            self.take()
            inner = self.binary(0)
            self.expect(")")
            inner.plain = False  # (x)[5m] is not a range selector
            return inner
        if token.kind in ("number", "duration"):  # a bare duration is a number of seconds
            self.take()
            return Parsed(SCALAR, labels=frozenset())
        if token.kind == "ident" and token.text.lower() in ("inf", "nan"):
            self.take()
            return Parsed(SCALAR, labels=frozenset())
        if token.kind == "string":
            self.take()
            return Parsed(STRING)
        if self.at("{"):
            return self.selector(None)
        if token.kind == "ident" and token.text not in KEYWORDS:
            self.take()
            if token.text in AGGREGATIONS:
                return self.aggregation(token.text)
            if self.at("("):
                return self.call(token.text)
            return self.selector(token.text)
        raise PromQLError(f"unexpected {token.text!r} at {token.at}")

    def selector(self, metric: str | None) -> Parsed:
        matchers: list[tuple[str, str, str]] = []
        if self.at("{"):
            self.take()
            while not self.at("}"):
                label = self.expect_kind("ident").text
                if not self.at("=", "!=", "=~", "!~"):
                    raise PromQLError(f"expected a matcher operator after {label}")
                operator = self.take().text
                value = _unquote(self.expect_kind("string").text)
                if operator in ("=~", "!~"):
                    try:
                        re.compile(value)
                    except re.error as error:
                        raise PromQLError(f"bad regular expression {value!r}: {error}") from None
                matchers.append((label, operator, value))
                if not self.at("}"):
                    self.expect(",")
            self.take()
        named = dict((label, value) for label, op, value in matchers if op == "=")
        metric = metric or named.get("__name__")
        if metric is None and not any(_matches_nonempty(m) for m in matchers):
            raise PromQLError("a selector needs a metric name or a matcher that excludes ''")
        return Parsed(VECTOR, [Selector(metric, tuple(matchers))], None, plain=True)

    def label_list(self) -> set[str]:
        self.expect("(")
        labels: set[str] = set()
        while not self.at(")"):
            labels.add(self.expect_kind("ident").text)
            if not self.at(")"):
                self.expect(",")
        self.take()
        return labels

    def aggregation(self, name: str) -> Parsed:
        modifier: tuple[str, set[str]] | None = None
        if self.at("by", "without"):
            kind = self.take().text
            modifier = (kind, self.label_list())
        self.expect("(")
        if name in PARAMETERISED:
            parameter = self.binary(0)
            if parameter.type != PARAMETERISED[name]:
                raise PromQLError(f"{name} takes a {PARAMETERISED[name]} first")
            self.expect(",")
        operand = self.binary(0)
        self.expect(")")
        if modifier is None and self.at("by", "without"):
            kind = self.take().text
            modifier = (kind, self.label_list())
        if operand.type != VECTOR:
            raise PromQLError(f"{name} needs an instant vector, got a {operand.type}")
        grouping = set(operand.grouping)
        dropped = frozenset[str]()
        labels: frozenset[str] | None
        if modifier is None:
            labels = frozenset()
        elif modifier[0] == "by":
            labels = frozenset(modifier[1])
            grouping |= modifier[1]
        else:
            labels = None if operand.labels is None else operand.labels - modifier[1]
            dropped = operand.dropped | modifier[1]
            grouping |= modifier[1]
        return Parsed(VECTOR, operand.selectors, labels, grouping, dropped=dropped)

    def call(self, name: str) -> Parsed:
        if name not in FUNCTIONS:
            raise PromQLError(f"unknown function {name}")
        expected, optional, variadic, result = FUNCTIONS[name]
        self.expect("(")
        arguments: list[Parsed] = []
        while not self.at(")"):
            arguments.append(self.binary(0))
            if not self.at(")"):
                self.expect(",")
        self.take()
        if not (len(expected) - optional <= len(arguments) <= len(expected) or variadic):
            raise PromQLError(f"{name} takes {len(expected)} arguments, got {len(arguments)}")
        for position, argument in enumerate(arguments):
            wanted = expected[min(position, len(expected) - 1)]
            if argument.type != wanted:
                raise PromQLError(f"{name} argument {position + 1}: {wanted}, not {argument.type}")
        selectors = [s for argument in arguments for s in argument.selectors]
        grouping = set().union(*(a.grouping for a in arguments)) if arguments else set()
        vectors = [a for a in arguments if a.type in (VECTOR, MATRIX)]
        labels: frozenset[str] | None = frozenset() if result == SCALAR else None
        dropped = frozenset[str]()
        if result == VECTOR and vectors:
            labels, dropped = vectors[0].labels, vectors[0].dropped
            if name == "histogram_quantile":
                grouping.add("le")  # the buckets' label must survive the aggregation
                labels = None if labels is None else labels - {"le"}
                dropped |= {"le"}
        elif result == VECTOR:
            labels = frozenset()
        return Parsed(result, selectors, labels, grouping, dropped=dropped)


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    return bytes(text[1:-1], "utf-8").decode("unicode_escape")


def _matches_nonempty(matcher: tuple[str, str, str]) -> bool:
    """Whether the matcher excludes the empty value (Prometheus requires one such)."""
    _, operator, value = matcher
    if operator == "=":
        return value != ""
    if operator == "=~":
        return re.fullmatch(value, "") is None
    if operator == "!=":
        return value == ""
    return re.fullmatch(value, "") is not None  # !~ a pattern that matches ''


def parse(text: str) -> Parsed:
    return _Parser(text).parse()


# Grafana replaces these before the query reaches Prometheus.
GRAFANA_INTERVALS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def parse_grafana(text: str) -> Parsed:
    """A dashboard query: Grafana's interval variables stand for durations; other variables
    may appear only inside label values (where they are plain text to the parser)."""
    for variable, duration in GRAFANA_INTERVALS.items():
        text = text.replace(variable, duration)
    return parse(text)


# ---------------------------------------------------------------------------- tests of the parser


@pytest.mark.parametrize(
    "text",
    [
        "crm_consumer_lag",
        'crm_consumer_lag{consumer="scoring", topic=~"crm\\\\..*"} > 10',
        "sum by (consumer) (max by (consumer, topic, partition) (crm_consumer_lag)) > 1e4",
        "sum(rate(x_total[5m])) without (route)",
        "histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m])))",
        "time() - max(x) > 120",
        "a / on (instance) group_left (version) b",
        "(a > 0) unless on (job, instance) (increase(b_total[10m]) > 0)",
        "count by (ns) (count by (ns, version) (x)) > 1",
        "max_over_time(rate(x_total[1m])[30m:1m])",
        "x offset 5m",
        "-x ^ 2 ^ 3",
        "1 > bool 2",
        "topk(3, x)",
        'label_replace(x, "a", "$1", "b", "(.*)")',
        '{__name__="x"}',
    ],
)
def test_parses_valid_promql(text: str) -> None:
    parse(text)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("rate(x[5m]", "expected ','"),
        ("rate(x)", "range vector"),
        ("sum(x[5m])", "instant vector"),
        ("x[5m] > 1", "instant vectors or scalars"),
        ("rates(x[5m])", "unknown function"),
        ("histogram_quantile(x, 0.9)", "argument 1"),
        ("sum by (a (x)", "expected"),
        ('x{a="b"', "expected"),
        ('{a=""}', "metric name"),
        ("x{a=~'('}", "regular expression"),
        ("1 > 2", "need bool"),
        ("x and 1", "set operator"),
        ("x > ", "unexpected"),
        ("rate(x[5]) ", "duration"),
        ("x y", "unexpected"),
        ("sum(x)[5m]", "plain selector"),
        ("x $y", "unexpected character"),
    ],
)
def test_rejects_invalid_promql(text: str, complaint: str) -> None:
    with pytest.raises(PromQLError, match=re.escape(complaint)):
        parse(text)


def test_reports_selectors_output_labels_and_grouping() -> None:
    parsed = parse(
        "sum by (namespace, consumer) (max by (namespace, consumer, topic, partition) "
        '(crm_consumer_lag{consumer!="x"})) / on (consumer) group_left (le) y'
    )
    assert [s.metric for s in parsed.selectors] == ["crm_consumer_lag", "y"]
    assert parsed.selectors[0].label_names() == {"consumer"}
    assert parsed.labels == {"namespace", "consumer"}
    assert parsed.grouping == {"namespace", "consumer", "topic", "partition", "le"}
    assert parse("time() - max(x)").labels == frozenset()
    assert parse("rate(x[5m])").labels is None
    assert parse("histogram_quantile(0.5, sum by (le, a) (rate(x[5m])))").labels == {"a"}
    without = parse("sum without (route, status) (rate(x[5m])) / sum without (route) (y) > 0")
    assert without.labels is None
    assert without.dropped == {"route", "status"}


def test_grafana_intervals_are_durations() -> None:
    parsed = parse_grafana('rate(x{namespace=~"$namespace"}[$__rate_interval])')
    assert parsed.type == VECTOR
    assert parsed.selectors[0].matchers == (("namespace", "=~", "$namespace"),)
