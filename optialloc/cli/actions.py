"""Sub-actions of a command (`queue list`, `nodes lock`): one parser each, examples included."""

from __future__ import annotations

import argparse


def add_action(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg,unused-ignore]
    name: str,
    help_text: str,
    examples: str,
) -> argparse.ArgumentParser:
    """Add action `name` to `sub`: its help is also its description; `examples` (lines after
    the first indented by two spaces) become the `examples:` epilog, which
    tests/test_examples.py runs."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog="examples:\n  " + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser
