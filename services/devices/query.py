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
on DeviceRow for SQLite or PostgreSQL.

Dialects: the same grammar, read as another product's users write it. `FOREMAN` (Foreman's host
search, surface D) adds the field names Foreman users know — hostgroup (hostgroup_name,
hostgroup_title) = group, os / operatingsystem = fact.os, architecture = fact.arch, facts.<key> =
fact.<key>, params.<key> = label.<key>, id = the device's number — plus Foreman's reading of the
operators: `~` / `!~` match anywhere unless the value has a wildcard (`%`, or `*` for any run),
`!^` (none of), `<` `>` `<=` `>=` on numbers, `&` / `|` / `!` for and / or / not, and a bare value
(`web01`) searching names (`name ~ web01`). Another service may define a Dialect of its own fields
(the runs service's job invocation search) and compile the parsed AST itself."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import ColumnElement, and_, exists, false, func, not_, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB

from services.common.errors import InvalidArgument

MAX_QUERY_LEN = 4096
MAX_DEPTH = 32
SCALAR_FIELDS = ("id", "name", "model", "agent_version")
MAP_PREFIXES = ("label.", "fact.")
KEYWORDS = ("and", "or", "not")
OPERATORS = ("!=", "!~", "!^", "<=", ">=", "=", "~", "^", "<", ">")
COMPARISONS = ("<", ">", "<=", ">=")

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<op>!=|!~|!\^|<=|>=|=|~|\^|<|>)
  | (?P<punct>[(),])
  | (?P<quoted>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<word>[A-Za-z0-9._:/%*@+\-]+)
""", re.VERBOSE)
# Foreman's symbols for and / or / not.
_LOGIC = re.compile(r"&&|&|\|\||\||!")
_LOGIC_WORDS = {"&": "and", "&&": "and", "|": "or", "||": "or", "!": "not"}


@dataclass(frozen=True)
class Dialect:
    """How one product's users write the language: field names, and what `~` and bare words mean."""

    name: str
    # A field as written -> its canonical name, or None when unknown.
    field: Callable[[str], str | None]
    # What the error for an unknown field lists.
    known: str
    numeric_fields: tuple[str, ...] = ()
    # `~ web` matches anywhere (LIKE %web%) unless the value has a wildcard; `*` is `%`.
    contains_like: bool = False
    # A bare value searches this field with `~`.
    bare_field: str = ""
    logic_symbols: bool = False


def _native_field(name: str) -> str | None:
    lowered = name.lower()
    if lowered in SCALAR_FIELDS or lowered in ("online", "group"):
        return lowered
    for prefix in MAP_PREFIXES:
        if lowered.startswith(prefix) and len(name) > len(prefix):
            return prefix + name[len(prefix):]
    return None


FOREMAN_HOST_ALIASES = {
    "name": "name", "hostname": "name", "hostgroup": "group", "hostgroup_name": "group", "hostgroup_title": "group",
    "hostgroup_fullname": "group", "group": "group", "os": "fact.os", "operatingsystem": "fact.os",
    "os_title": "fact.os", "os_name": "fact.os", "architecture": "fact.arch", "arch": "fact.arch",
    "model": "model", "id": "number", "host_id": "number", "online": "online", "agent_version": "agent_version",
}
FOREMAN_HOST_PREFIXES = {"facts.": "fact.", "fact.": "fact.", "params.": "label.", "parameter.": "label.",
                         "label.": "label."}


def _foreman_host_field(name: str) -> str | None:
    lowered = name.lower()
    if lowered in FOREMAN_HOST_ALIASES:
        return FOREMAN_HOST_ALIASES[lowered]
    for prefix, canonical in FOREMAN_HOST_PREFIXES.items():
        if lowered.startswith(prefix) and len(name) > len(prefix):
            return canonical + name[len(prefix):]
    return None


NATIVE = Dialect("native", _native_field, "id, name, model, agent_version, online, group, label.<key>, fact.<key>")
FOREMAN = Dialect("foreman", _foreman_host_field,
                  "name, hostgroup, os, architecture, model, id, online, agent_version, facts.<key>, params.<key>",
                  numeric_fields=("number",), contains_like=True, bare_field="name", logic_symbols=True)
DIALECTS = {"": NATIVE, "native": NATIVE, "foreman": FOREMAN}


def dialect_named(name: str) -> Dialect:
    try:
        return DIALECTS[name]
    except KeyError:
        raise InvalidArgument(f"unknown query dialect {name!r} (native or foreman)") from None


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


def tokenize(text: str, dialect: Dialect = NATIVE) -> list[Token]:
    tokens, at = [], 0
    while at < len(text):
        if dialect.logic_symbols and (text[at] in "&|" or text[at] == "!" and text[at + 1:at + 2] not in ("=", "~", "^")):
            logic = _LOGIC.match(text, at)
            assert logic is not None
            tokens.append(Token("word", _LOGIC_WORDS[logic.group()], at + 1))
            at = logic.end()
            continue
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
    def __init__(self, text: str, dialect: Dialect = NATIVE) -> None:
        self.dialect = dialect
        self.tokens = tokenize(text, dialect)
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
        if self.dialect.bare_field and token.kind in ("word", "quoted") and self.peek().kind != "op" \
                and token.text.lower() not in KEYWORDS:
            return Comparison(self.dialect.bare_field, "~", (self._like(token.value),))
        if token.kind != "word" or token.text.lower() in KEYWORDS:
            raise _error(f"expected a field, found {_describe(token)}", token.position)
        field = _field(token, self.dialect)
        op = self.take()
        if op.kind != "op":
            raise _error(f"expected an operator (= != ~ !~ ^ !^) after {token.text!r}, found {_describe(op)}",
                         op.position)
        if op.text in ("^", "!^"):
            self.expect("(", f"'(' after '{op.text}'")
            values = []
            if not (self.peek().kind == "punct" and self.peek().text == ")" and self.dialect.contains_like):
                values.append(self.value())  # (Foreman accepts `name ^ ()`: nothing matches)
                while self.peek().kind == "punct" and self.peek().text == ",":
                    self.take()
                    values.append(self.value())
            self.expect(")", "',' or ')'")
        else:
            values = [self.value()]
        if op.text in ("~", "!~"):
            values = [self._like(values[0])]
        if field in self.dialect.numeric_fields:
            if op.text in ("~", "!~"):
                raise _error(f"{token.text} is a number: compare it with = != ^ !^ < > <= >=", op.position)
            for value in values:
                if not value.isascii() or not value.lstrip("-").isdigit():
                    raise _error(f"{token.text} is compared with whole numbers, not {value!r}",
                                 self.tokens[self.at - 1].position)
        elif op.text in COMPARISONS:
            raise _error(f"operator {op.text!r} compares numbers; {token.text} is not one", op.position)
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

    def _like(self, value: str) -> str:
        """A `~` pattern as the dialect reads it."""
        if not self.dialect.contains_like:
            return value
        if "%" not in value and "*" not in value:
            return f"%{value}%"
        return value.replace("*", "%")


def _describe(token: Token) -> str:
    return "the end of the query" if token.kind == "end" else repr(token.text)


def _field(token: Token, dialect: Dialect = NATIVE) -> str:
    field = dialect.field(token.text)
    if field is None:
        raise _error(f"unknown field {token.text!r} ({dialect.known})", token.position)
    return field


def parse(text: str, dialect: Dialect | str = NATIVE) -> Node:
    if isinstance(dialect, str):
        dialect = dialect_named(dialect)
    if len(text) > MAX_QUERY_LEN:
        raise InvalidArgument(f"the query must be at most {MAX_QUERY_LEN} characters")
    if not text.strip():
        raise InvalidArgument("invalid query at position 1: the query is empty")
    return _Parser(text, dialect).parse()


# -- to SQL ----------------------------------------------------------------------------------------


def compile_query(node: Node, row: Any, is_postgres: bool) -> ColumnElement[bool]:
    """The SQL condition for a parsed query on the DeviceRow model `row`."""
    if isinstance(node, Comparison):
        return _comparison(node, row, is_postgres)
    if node[0] == "not":
        return not_(compile_query(node[1], row, is_postgres))
    combine = and_ if node[0] == "and" else or_
    return combine(compile_query(node[1], row, is_postgres), compile_query(node[2], row, is_postgres))


def _match(op: str, column: Any, values: tuple[Any, ...]) -> ColumnElement[bool]:
    """A positive test of one column (ops = ~ ^ < > <= >=)."""
    if op == "=":
        return column == values[0]
    if op == "~":
        return column.ilike(values[0])
    if op in COMPARISONS:
        return {"<": column < values[0], ">": column > values[0], "<=": column <= values[0],
                ">=": column >= values[0]}[op]
    if not values:
        return false()
    return column.in_(list(values))


def match(op: str, column: Any, values: tuple[Any, ...]) -> ColumnElement[bool]:
    """The positive test of one column for a comparison's operator (= ~ ^ < > <= >=): for another
    service compiling the parsed AST onto its own table."""
    return _match(op, column, values)


def positive_op(op: str) -> tuple[str, bool]:
    """(the positive operator, whether op negates it): != -> (=, True), !^ -> (^, True)."""
    positive = {"!=": "=", "!~": "~", "!^": "^"}.get(op, op)
    return positive, positive != op


def _comparison(node: Comparison, row: Any, is_postgres: bool) -> ColumnElement[bool]:
    op, values = node.op, node.values
    positive, negated = positive_op(op)
    if node.field == "number":
        condition = _match(positive, row.number, tuple(int(v) for v in values))
        return not_(condition) if negated else condition
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


__all__ = ["Comparison", "Dialect", "FOREMAN", "NATIVE", "compile_query", "dialect_named", "match", "parse", "positive_op",
           "tokenize"]
