"""The device search language: parsed once here, compiled to SQL (never filtered in Python).

    query      := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" or ")" | comparison
    comparison := field op value | field "^" "(" value ("," value)* ")"
    field      := id | name | model | agent_version | online | group | label.<key> | fact.<key>
    op         := "=" | "!=" | "~" (LIKE: % any run, _ one character; case-insensitive) | "!~"
    value      := a bare word ([A-Za-z0-9._:/%*@+-]+) | "double" or 'single' quoted (backslash escapes)

Examples: `name ~ web%`, `group = lab and label.os = android`, `name ^ (a, b)`, `online = true`,
`not (fact.os = linux or group != eu)`. Keywords are case-insensitive. A syntax error is an
InvalidArgument naming the 1-based character position. `label.k != v` and `label.k !~ p` also
match devices without the label; `group != g` matches devices not in g.

`parse()` answers an AST (plain tuples); `compile_query()` turns one into a SQLAlchemy condition
on DeviceRow for SQLite or PostgreSQL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from services.common.errors import InvalidArgument

MAX_QUERY_LEN = 4096
MAX_DEPTH = 32
SCALAR_FIELDS = ("id", "name", "model", "agent_version")
MAP_PREFIXES = ("label.", "fact.")
KEYWORDS = ("and", "or", "not")
OPERATORS = ("!=", "!~", "=", "~", "^")

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<op>!=|!~|=|~|\^)
  | (?P<punct>[(),])
  | (?P<quoted>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<word>[A-Za-z0-9._:/%*@+\-]+)
""", re.VERBOSE)


@dataclass(frozen=True)
class Token:
    kind: str  # op | punct | quoted | word | end
    text: str
    position: int  # 1-based

    @property
    def value(self) -> str:
        if self.kind == "quoted":
            return re.sub(r"\\(.)", r"\1", self.text[1:-1])
        return self.text


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    values: tuple[str, ...]


Node = Comparison | tuple  # ("and", a, b) | ("or", a, b) | ("not", a)


def _error(message: str, position: int) -> InvalidArgument:
    return InvalidArgument(f"invalid query at position {position}: {message}")


def tokenize(text: str) -> list[Token]:
    tokens, at = [], 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            if text[at] in "\"'":
                raise _error("unterminated quoted value", at + 1)
            raise _error(f"unexpected character {text[at]!r}", at + 1)
        kind = match.lastgroup
        if kind != "space":
            tokens.append(Token(kind or "word", match.group(), at + 1))
        at = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.at = 0
        self.depth = 0

    def peek(self) -> Token:
        return self.tokens[self.at]

    def take(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "word" and token.text.lower() == word:
            self.at += 1
            return True
        return False

    def expect(self, text: str, what: str) -> Token:
        token = self.take()
        if token.kind != "punct" or token.text != text:
            raise _error(f"expected {what}, found {_describe(token)}", token.position)
        return token

    def parse(self) -> Node:
        node = self.or_()
        token = self.peek()
        if token.kind != "end":
            raise _error(f"expected 'and', 'or' or the end, found {_describe(token)}", token.position)
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.keyword("or"):
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.keyword("and"):
            node = ("and", node, self.not_())
        return node

    def not_(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error("too deeply nested", self.peek().position)
        try:
            if self.keyword("not"):
                return ("not", self.not_())
            token = self.peek()
            if token.kind == "punct" and token.text == "(":
                self.take()
                node = self.or_()
                self.expect(")", "')'")
                return node
            return self.comparison()
        finally:
            self.depth -= 1

    def comparison(self) -> Comparison:
        token = self.take()
        if token.kind != "word" or token.text.lower() in KEYWORDS:
            raise _error(f"expected a field, found {_describe(token)}", token.position)
        field = _field(token)
        op = self.take()
        if op.kind != "op":
            raise _error(f"expected an operator (= != ~ !~ ^) after {token.text!r}, found {_describe(op)}",
                         op.position)
        if op.text == "^":
            self.expect("(", "'(' after '^'")
            values = [self.value()]
            while self.peek().kind == "punct" and self.peek().text == ",":
                self.take()
                values.append(self.value())
            self.expect(")", "',' or ')'")
        else:
            values = [self.value()]
        if field == "online":
            if op.text not in ("=", "!="):
                raise _error("online takes = or != with true or false", op.position)
            if values[0].lower() not in ("true", "false"):
                raise _error("online is compared with true or false", self.tokens[self.at - 1].position)
        return Comparison(field, op.text, tuple(values))

    def value(self) -> str:
        token = self.take()
        if token.kind not in ("word", "quoted"):
            raise _error(f"expected a value, found {_describe(token)}", token.position)
        return token.value


def _describe(token: Token) -> str:
    return "the end of the query" if token.kind == "end" else repr(token.text)


def _field(token: Token) -> str:
    name = token.text
    lowered = name.lower()
    if lowered in SCALAR_FIELDS or lowered in ("online", "group"):
        return lowered
    for prefix in MAP_PREFIXES:
        if lowered.startswith(prefix) and len(name) > len(prefix):
            return prefix + name[len(prefix):]
    raise _error(f"unknown field {name!r} (id, name, model, agent_version, online, group, label.<key>, "
                 "fact.<key>)", token.position)


def parse(text: str) -> Node:
    if len(text) > MAX_QUERY_LEN:
        raise InvalidArgument(f"the query must be at most {MAX_QUERY_LEN} characters")
    if not text.strip():
        raise InvalidArgument("invalid query at position 1: the query is empty")
    return _Parser(text).parse()


# -- to SQL ----------------------------------------------------------------------------------------


def compile_query(node: Node, row: Any, is_postgres: bool) -> ColumnElement[bool]:
    """The SQL condition for a parsed query on the DeviceRow model `row`."""
    if isinstance(node, Comparison):
        return _comparison(node, row, is_postgres)
    if node[0] == "not":
        return not_(compile_query(node[1], row, is_postgres))
    combine = and_ if node[0] == "and" else or_
    return combine(compile_query(node[1], row, is_postgres), compile_query(node[2], row, is_postgres))


def _match(op: str, column: Any, values: tuple[str, ...]) -> ColumnElement[bool]:
    """A positive test of one text column (ops = ~ ^)."""
    if op == "=":
        return column == values[0]
    if op == "~":
        return column.ilike(values[0])
    return column.in_(list(values))


def _comparison(node: Comparison, row: Any, is_postgres: bool) -> ColumnElement[bool]:
    op, values = node.op, node.values
    positive = {"!=": "=", "!~": "~"}.get(op, op)
    negated = positive != op
    if node.field == "online":
        wanted = values[0].lower() == "true"
        return row.online == (wanted != negated)  # type: ignore[no-any-return]
    if node.field in SCALAR_FIELDS:
        condition = _match(positive, getattr(row, node.field), values)
        return not_(condition) if negated else condition
    if node.field == "group":
        condition = _any_group(row, is_postgres, lambda value: _match(positive, value, values),
                               values[0] if positive == "=" else None)
        return not_(condition) if negated else condition
    prefix, key = node.field.split(".", 1)
    column = getattr(row, "labels" if prefix == "label" else "facts")
    extracted = column[key].as_string()
    condition = _match(positive, extracted, values)
    if negated:
        return or_(extracted.is_(None), not_(condition))
    return and_(extracted.is_not(None), condition)


def _any_group(row: Any, is_postgres: bool, predicate: Callable[[Any], ColumnElement[bool]],
               exact: str | None) -> ColumnElement[bool]:
    if is_postgres:
        if exact is not None:  # uses the GIN index
            return type_coerce(row.groups, JSONB).contains([exact])
        member = func.jsonb_array_elements_text(row.groups).table_valued("value")
    else:
        member = func.json_each(row.groups).table_valued("value")
    return exists(select(member.c.value).where(predicate(member.c.value)))


__all__ = ["Comparison", "compile_query", "parse", "tokenize"]
