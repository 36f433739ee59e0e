"""One short, readable line for a YAML parse error: what is wrong, at which line and column.

PyYAML's own text repeats its context ("while parsing a flow sequence ...
expected ',' or ']' ...") over several lines with source excerpts; a person
needs the problem and where it is.
"""

from __future__ import annotations

import yaml


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """`line L, column C: <problem> (<context>)`; lines and columns count from 1."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        text = str(exc).strip().splitlines()
        return text[0] if text else "parse error"
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = (exc.problem or exc.context or "parse error").strip()
    context = (exc.context or "").strip()
    if context and context != problem:
        return f"{where}{problem} ({context})"
    return f"{where}{problem}"
