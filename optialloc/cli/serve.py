"""`optialloc serve`: placeholder until its issue lands (NOT BUILT YET)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("serve", help="(not built yet)")
    parser.set_defaults(func=lambda args: 2)
