"""What a YAML mapping looks like, for errors that say what a file is *not*.

A file given where a snapshot belongs (`plan --snapshot`) may be a job, a lab
file, a policy model or a config: telling the person "this is a job, not a
snapshot" beats a warning per unknown key and then "taken_at: missing".
`looks_like` guesses from the top-level keys only; it never validates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: (what it is, keys only that kind of file has at its top level), first match wins
_KINDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("a job", frozenset({"roles", "tasks", "machine_type", "owner", "suite", "last_in_suite"})),
    ("a policy model", frozenset({"weights", "aging", "fairness", "reservations", "solver"})),
    (
        "an optialloc config",
        frozenset({"queue_backend", "state_dir", "lock_server", "runner", "tick_seconds"}),
    ),
    ("a lab file", frozenset({"groups", "name"})),
    ("a what-if workload's generator parameters", frozenset({"days", "runs_per_day", "origin"})),
)


def looks_like(data: Mapping[str, Any]) -> str | None:
    """What the mapping is ("a job", "a lab file", ...) if its top-level keys say so; else None."""
    keys = {str(k) for k in data}
    for kind, marks in _KINDS:
        if keys & marks:
            return kind
    return None
