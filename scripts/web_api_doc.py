"""Write the API reference of docs/web.md from the web app's own OpenAPI document.

Usage: python scripts/web_api_doc.py [--check]
Replaces the text between the `<!-- api:begin -->` and `<!-- api:end -->`
markers of docs/web.md; with --check, exits 1 if the file is not up to date
(tests/test_web_docs.py runs that).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from optialloc.config import Config
from optialloc.web.app import create_app
from optialloc.web.refresher import Refresher

DOC = Path(__file__).resolve().parent.parent / "docs" / "web.md"
BEGIN, END = "<!-- api:begin -->", "<!-- api:end -->"


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}))}"
    return str(schema.get("type", "any"))


def _limits(schema: dict[str, Any]) -> str:
    parts = []
    for key, text in (("minimum", ">= "), ("maximum", "<= "), ("maxLength", "length <= ")):
        for sub in [schema, *schema.get("anyOf", [])]:
            if key in sub:
                parts.append(f"{text}{sub[key]}")
    if "default" in schema and schema["default"] is not None:
        parts.append(f"default {schema['default']}")
    return ", ".join(parts)


def render(doc: dict[str, Any]) -> str:
    """Markdown for every operation and response schema of an OpenAPI document."""
    lines = [f"Generated from `/api/openapi.json` (optialloc {doc['info']['version']}).", ""]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            lines.append(f"### `{method.upper()} {path}`")
            text = op.get("description") or op.get("summary") or ""
            if text:
                lines += ["", text.strip().splitlines()[0]]
            params = op.get("parameters", [])
            if params:
                lines += ["", "| parameter | in | type | limits |", "|---|---|---|---|"]
                for p in params:
                    schema = p.get("schema", {})
                    lines.append(
                        f"| `{p['name']}` | {p['in']} | {_type(schema)} | {_limits(schema)} |"
                    )
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                lines += ["", f"Body: `{_type(body['schema'])}` (JSON)."]
            codes = ", ".join(
                f"{code} ({_type(r['content']['application/json']['schema'])})"
                if "application/json" in r.get("content", {})
                else code
                for code, r in op["responses"].items()
            )
            auth = " Needs the admin bearer token." if "admin" in op.get("tags", []) else ""
            lines += ["", f"Answers: {codes}.{auth}", ""]
    lines += ["### Schemas", ""]
    for name, schema in doc["components"]["schemas"].items():
        props = schema.get("properties", {})
        if not props:
            continue
        fields = ", ".join(f"`{k}` ({_type(v)})" for k, v in props.items())
        lines.append(f"- **{name}**: {fields}")
    return "\n".join(lines).rstrip() + "\n"


def current() -> str:
    app = create_app(Config(), Refresher(Config(), estimates=False))
    return render(app.openapi())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/web.md is stale")
    args = parser.parse_args()
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    updated = f"{head}{BEGIN}\n{current()}{END}{tail}"
    if args.check:
        if updated != text:
            print("docs/web.md: the API reference is stale: run scripts/web_api_doc.py")
            return 1
        return 0
    DOC.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
