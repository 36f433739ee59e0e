"""Decayed past usage per owner (node-seconds), the input of fair-share policies.

`Snapshot.usage` says how much each owner has used the lab lately; a policy
with `fairness.usage_penalty > 0` makes heavy users' jobs less urgent. The
dispatcher keeps one `UsageMeter`: every finished attempt adds
`nodes x runtime`, and all values halve every `half_life_s` (one day), so
last week counts little and last month nothing. Running jobs count for the
time they have run so far. Rebuilt from the journal at start-up, so a
restart does not forget. Pure arithmetic: time comes from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from optialloc.domain import RunningJob

#: Usage halves every day.
HALF_LIFE_S = 86400.0
#: Older attempts are not worth reading back from the journal (0.5 ** 14).
HISTORY_S = 14 * 86400.0


class UsageMeter:
    """Exponentially decayed node-seconds per owner."""

    def __init__(self, half_life_s: float = HALF_LIFE_S) -> None:
        self.half_life_s = half_life_s
        self._values: dict[str, float] = {}
        self._at: datetime | None = None

    def _decay_to(self, when: datetime) -> None:
        if self._at is None:
            self._at = when
            return
        elapsed = (when - self._at).total_seconds()
        if elapsed <= 0:
            return
        factor = 0.5 ** (elapsed / self.half_life_s)
        for owner in self._values:
            self._values[owner] *= factor
        self._at = when

    def add(self, owner: str, node_seconds: float, at: datetime) -> None:
        """Count `node_seconds` of use by `owner`, finished at `at` (earlier times are decayed)."""
        if not owner or node_seconds <= 0:
            return
        if self._at is not None and at < self._at:
            node_seconds *= 0.5 ** ((self._at - at).total_seconds() / self.half_life_s)
        else:
            self._decay_to(at)
        self._values[owner] = self._values.get(owner, 0.0) + node_seconds

    def load(self, history: Iterable[tuple[str, int, datetime, datetime]]) -> None:
        """Add finished attempts (owner, nodes, started_at, ended_at), oldest first."""
        for owner, nodes, started, ended in sorted(history, key=lambda item: item[3]):
            self.add(owner, nodes * max(0.0, (ended - started).total_seconds()), ended)

    def at(self, now: datetime, running: Sequence[RunningJob] = ()) -> dict[str, float]:
        """Usage per owner as of `now`, running jobs included for the time they have run."""
        self._decay_to(now)
        values = dict(self._values)
        for job in running:
            seconds = max(0.0, (now - job.started_at).total_seconds())
            owner = job.job.owner
            if owner and seconds > 0 and job.nodes:
                values[owner] = values.get(owner, 0.0) + seconds * len(job.nodes)
        return values
