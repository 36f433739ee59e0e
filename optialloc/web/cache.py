"""Answers computed once per published view: the same request between two refreshes is free.

A status page refreshes its fragments every few seconds in every open
browser, and Prometheus scrapes the same URL: between two refreshes of the
view (one a second at most) their answers cannot change. `ViewCache` keeps
the encoded answers of the current `LabView`, keyed by the request's path
and query string, and forgets them all when a new view is published; at most
`MAX_ENTRIES` answers are kept per view (past that, answers are computed and
not stored). Safe from several threads: the worst race computes an answer twice.
"""

from __future__ import annotations

from collections.abc import Callable

from optialloc.web.state import LabView

MAX_ENTRIES = 256


class ViewCache:
    """Encoded answers of one view (see the module docstring)."""

    def __init__(self) -> None:
        self._view: LabView | None = None
        self._answers: dict[str, bytes] = {}

    def get(self, view: LabView, key: str, make: Callable[[], bytes]) -> bytes:
        if view is not self._view:
            self._view, self._answers = view, {}
        answers = self._answers
        answer = answers.get(key)
        if answer is None:
            answer = make()
            if len(answers) < MAX_ENTRIES:
                answers[key] = answer
        return answer
