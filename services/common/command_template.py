"""The syntax of a device job's command template, shared by the jobs service (which validates a
template when it is stored) and the runs service (whose `domain.render_command` fills it in).

Two ways to use an input in a command:
- `{{name}}`: the value, shell-quoted (the native API's templates);
- `<%= input('name') %>` (or `input("name")`): the value inserted as given, as Foreman's job
  templates do (a "Run Command" template's input *is* a command line).
`<%# ... %>` is an ERB comment (Foreman's template metadata header) and renders as nothing. Any
other `<% ... %>` tag is not supported: a template using one is refused when stored.
"""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
ERB_INPUT = re.compile(r"""<%=\s*input\(\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*\)\s*-?%>""")
ERB_COMMENT = re.compile(r"<%#.*?%>\n?", re.DOTALL)
ERB_TAG = re.compile(r"<%.*?%>", re.DOTALL)


def erb_name(match: re.Match[str]) -> str:
    return match.group(1) if match.group(1) is not None else match.group(2)


def referenced_inputs(template: str) -> tuple[set[str], set[str]]:
    """(the names used with {{name}}, the names used with <%= input('name') %>)."""
    body = ERB_COMMENT.sub("", template)
    return set(PLACEHOLDER.findall(body)), {erb_name(m) for m in ERB_INPUT.finditer(body)}


def unsupported_tags(template: str) -> list[str]:
    """The ERB tags other than input() and comments, as written."""
    body = ERB_INPUT.sub("", ERB_COMMENT.sub("", template))
    return ERB_TAG.findall(body)
