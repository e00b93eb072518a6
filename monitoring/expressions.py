"""Safe condition expressions for threshold checks: ``error_rate < 0.01``, ``result[0] >= 0.99 and p95 < 300``.

Pure (no Django import) and no ``eval``: a tokenizer and a recursive-descent parser build a small
tree that is type-checked when it is compiled, so a template with a bad condition is refused when it
is saved (:class:`ExpressionInvalid` names the position), not when the first measurement arrives.

Grammar (the subset of Argo Rollouts' ``expr`` conditions that thresholds need)::

    condition  := or
    or         := and (("or" | "||") and)*
    and        := not (("and" | "&&") not)*
    not        := ("not" | "!") not | comparison
    comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := "-" unary | atom
    atom       := NUMBER | "true" | "false" | NAME ("[" INTEGER "]")* | "(" condition ")"

``and``/``or``/``not`` take conditions, comparisons take numbers, the whole expression is a condition.
A name is a measured value (a number, or a list of numbers indexed with ``[i]``); comparing with NaN is
false, as in Go and IEEE 754.  One comparison per level: write ``0 < x and x < 1``, not ``0 < x < 1``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["EvaluationError", "Expression", "ExpressionInvalid", "compile_expression"]

MAX_LENGTH = 1000
MAX_DEPTH = 50


class ExpressionInvalid(ValueError):
    """The expression does not parse or type-check; ``position`` is the 0-based offset of the problem."""

    def __init__(self, message: str, *, source: str, position: int, field: str | None = None) -> None:
        self.message = message
        self.source = source
        self.position = position
        self.field = field
        where = f"{field}: " if field else ""
        super().__init__(f"{where}{message} at position {position + 1}: {_pointer(source, position)}")


class EvaluationError(ValueError):
    """A well-formed expression could not be evaluated against these values (missing name, bad index…)."""


def _pointer(source: str, position: int) -> str:
    shown = source if len(source) <= 80 else source[max(0, position - 40) : position + 40]
    offset = position if len(source) <= 80 else position - max(0, position - 40)
    return (
        f"{shown!r} (here: {shown[offset : offset + 10]!r})"
        if offset < len(shown)
        else f"{shown!r} (at the end)"
    )


# --------------------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op><=|>=|==|!=|&&|\|\||[<>!()\[\]+\-*/])
""",
    re.VERBOSE,
)

_KEYWORDS = {"and": "&&", "or": "||", "not": "!", "true": "true", "false": "false"}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # number | name | op | end
    text: str
    position: int


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            char = source[position]
            hint = {"=": ": compare with `==`", "&": ": write `and` (or `&&`)", "|": ": write `or` (or `||`)"}
            raise ExpressionInvalid(
                f"unexpected character {char!r}{hint.get(char, '')}", source=source, position=position
            )
        kind = match.lastgroup or ""
        text = match.group()
        if kind == "name" and text in _KEYWORDS:
            kind, text = ("op", _KEYWORDS[text]) if text in ("and", "or", "not") else ("bool", text)
        if kind != "space":
            tokens.append(_Token(kind, text, position))
        position = match.end()
    tokens.append(_Token("end", "", len(source)))
    return tokens


# --------------------------------------------------------------------------- tree

Values = Mapping[str, "float | Sequence[float]"]


@dataclass(frozen=True, slots=True)
class _Node:
    kind: str  # "bool" or "number": checked when compiled
    position: int
    run: Callable[[Values], object] = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Expression:
    """A compiled condition. ``names`` are the measured values it reads (check them against the query)."""

    source: str
    names: frozenset[str]
    _root: _Node = field(repr=False, compare=False)

    def evaluate(self, values: Values) -> bool:
        """True or false for these values; :class:`EvaluationError` if a name or index is missing."""
        return bool(self._root.run(values))


_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


def _divide(a: float, b: float) -> float:
    if b == 0:
        # IEEE: x/0 is ±inf and 0/0 NaN; conditions on them are then false, like Go's float division.
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _divide,
}


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.index = 0
        self.depth = 0
        self.names: set[str] = set()

    # helpers
    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def error(self, message: str, position: int | None = None) -> ExpressionInvalid:
        return ExpressionInvalid(
            message, source=self.source, position=self.token.position if position is None else position
        )

    def accept(self, *texts: str) -> _Token | None:
        token = self.token
        if token.kind == "op" and token.text in texts:
            self.index += 1
            return token
        return None

    def expect_kind(self, node: _Node, kind: str, what: str) -> _Node:
        if node.kind != kind:
            found = "a number" if node.kind == "number" else "a condition"
            raise self.error(
                f"{what} needs {'a condition' if kind == 'bool' else 'a number'}, found {found}",
                node.position,
            )
        return node

    # grammar
    def parse(self) -> _Node:
        if self.token.kind == "end":
            raise self.error("empty expression")
        node = self.condition()
        if self.token.kind != "end":
            raise self.error(f"unexpected {self.token.text!r}")
        if node.kind != "bool":
            raise self.error(
                "expected a condition such as `error_rate < 0.01`, found a number", node.position
            )
        return node

    def condition(self) -> _Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error("expression nested too deeply")
        node = self.disjunction()
        self.depth -= 1
        return node

    def disjunction(self) -> _Node:
        node = self.conjunction()
        while self.accept("||") is not None:
            left = self.expect_kind(node, "bool", "`or`")
            right = self.expect_kind(self.conjunction(), "bool", "`or`")
            node = _Node("bool", left.position, lambda v, a=left.run, b=right.run: bool(a(v)) or bool(b(v)))  # type: ignore[misc]  # a closure over its defaults
        return node

    def conjunction(self) -> _Node:
        node = self.negation()
        while self.accept("&&") is not None:
            left = self.expect_kind(node, "bool", "`and`")
            right = self.expect_kind(self.negation(), "bool", "`and`")
            node = _Node("bool", left.position, lambda v, a=left.run, b=right.run: bool(a(v)) and bool(b(v)))  # type: ignore[misc]  # a closure over its defaults
        return node

    def negation(self) -> _Node:
        if (op := self.accept("!")) is not None:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error("expression nested too deeply")
            inner = self.expect_kind(self.negation(), "bool", "`not`")
            self.depth -= 1
            return _Node("bool", op.position, lambda v, a=inner.run: not a(v))  # type: ignore[misc]  # a closure over its defaults
        return self.comparison()

    def comparison(self) -> _Node:
        left = self.sum()
        if (op := self.accept(*_COMPARISONS)) is None:
            return left
        self.expect_kind(left, "number", f"`{op.text}`")
        right = self.expect_kind(self.sum(), "number", f"`{op.text}`")
        if self.token.kind == "op" and self.token.text in _COMPARISONS:
            raise self.error("one comparison at a time: write `a < b and b < c`")
        compare = _COMPARISONS[op.text]
        return _Node("bool", left.position, lambda v, a=left.run, b=right.run: compare(a(v), b(v)))  # type: ignore[misc]  # a closure over its defaults

    def sum(self) -> _Node:
        node = self.product()
        while (op := self.accept("+", "-")) is not None:
            node = self.arithmetic(node, op, self.product())
        return node

    def product(self) -> _Node:
        node = self.unary()
        while (op := self.accept("*", "/")) is not None:
            node = self.arithmetic(node, op, self.unary())
        return node

    def arithmetic(self, left: _Node, op: _Token, right: _Node) -> _Node:
        self.expect_kind(left, "number", f"`{op.text}`")
        self.expect_kind(right, "number", f"`{op.text}`")
        apply = _ARITHMETIC[op.text]
        return _Node("number", left.position, lambda v, a=left.run, b=right.run: apply(a(v), b(v)))  # type: ignore[misc]  # a closure over its defaults

    def unary(self) -> _Node:
        if (op := self.accept("-")) is not None:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error("expression nested too deeply")
            inner = self.expect_kind(self.unary(), "number", "`-`")
            self.depth -= 1
            return _Node("number", op.position, lambda v, a=inner.run: -a(v))  # type: ignore[misc]  # a closure over its defaults
        return self.atom()

    def atom(self) -> _Node:
        token = self.token
        if token.kind == "number":
            self.index += 1
            value = float(token.text)
            return _Node("number", token.position, lambda v: value)
        if token.kind == "bool":
            self.index += 1
            constant = token.text == "true"
            return _Node("bool", token.position, lambda v: constant)
        if token.kind == "name":
            self.index += 1
            return self.name(token)
        if self.accept("(") is not None:
            inner = self.condition()
            if self.accept(")") is None:
                raise self.error(
                    "expected `)`" if self.token.kind == "end" else f"expected `)`, found {self.token.text!r}"
                )
            return inner
        if token.kind == "end":
            raise self.error("expression ends too early: expected a number, a name or `(`")
        raise self.error(f"expected a number, a name or `(`, found {token.text!r}")

    def name(self, token: _Token) -> _Node:
        name = token.text
        self.names.add(name)
        indexes: list[int] = []
        while self.accept("[") is not None:
            index = self.token
            if index.kind != "number" or not index.text.isdigit():
                raise self.error("an index is a whole number, as in `result[0]`")
            self.index += 1
            if self.accept("]") is None:
                raise self.error("expected `]`")
            indexes.append(int(index.text))
        path = tuple(indexes)

        def read(values: Values, name: str = name, path: tuple[int, ...] = path) -> float:
            if name not in values:
                raise EvaluationError(f"no value named {name!r} in this measurement")
            value: object = values[name]
            for i in path:
                if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                    raise EvaluationError(f"{name} is not a list: cannot take [{i}]")
                if i >= len(value):
                    raise EvaluationError(f"{name} has {len(value)} value(s): no [{i}]")
                value = value[i]
            if isinstance(value, bool) or not isinstance(value, int | float):
                if isinstance(value, Sequence) and not isinstance(value, str | bytes):
                    raise EvaluationError(f"{name} is a list of {len(value)}: index it, as in {name}[0]")
                raise EvaluationError(f"{name} is not a number: {value!r}")
            return float(value)

        return _Node("number", token.position, read)


def compile_expression(source: str, *, field: str | None = None) -> Expression:
    """Parse and type-check ``source``; :class:`ExpressionInvalid` (naming ``field`` and the position) if bad."""
    if not isinstance(source, str):
        raise ExpressionInvalid("an expression is text", source=repr(source), position=0, field=field)
    if len(source) > MAX_LENGTH:
        raise ExpressionInvalid(
            f"longer than {MAX_LENGTH} characters",
            source=source[:MAX_LENGTH],
            position=MAX_LENGTH - 1,
            field=field,
        )
    try:
        parser = _Parser(source)
        root = parser.parse()
    except ExpressionInvalid as error:
        if field is None:
            raise
        raise ExpressionInvalid(error.message, source=source, position=error.position, field=field) from None
    return Expression(source=source, names=frozenset(parser.names), _root=root)
