"""Runtime estimates learned from finished jobs, by teuthology job description.

Teuthology bodies carry no runtime estimate, but a lab runs the same tests
again and again: a nightly suite repeats its job descriptions (the facet path
such as `rados/thrash/{clusters/fixed-2 ... tasks/radosbench}`) every night, and
a given description takes about the same time each run. `RuntimeHistory`
records how long each description ran when it passed and estimates its next
runtime as an exponentially weighted geometric mean of those runs (runtimes
are long-tailed, so the mean is taken over their logarithms).

The dispatcher feeds it every job that ended with exit status 0 (killed or
failed attempts say little about a normal run) and hands `estimates()` to the
solver in `Snapshot.runtime_estimates`; the policy decides what estimates do
(`weights.runtime_exponent`, `reservations.backfill`; docs/policy.md).

Storage is one small SQLite table in the state directory (`runtimes.sqlite`),
so estimates survive restarts; `":memory:"` keeps them in memory (what-if).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from optialloc.domain import Job
from optialloc.errors import BackendUnavailable

log = logging.getLogger(__name__)

RUNTIMES_FILE = "runtimes.sqlite"
#: Weight of the newest run once a description has `1 / ALPHA` runs (before that,
#: the plain mean of the runs so far): recent runs count more as tests change.
ALPHA = 0.2
#: Runs shorter than this say more about a broken setup than about the test.
MIN_RUNTIME_S = 10.0


class RuntimeHistory:
    """Per-description runtime estimates; `observe` a passed run, read `estimates()`.

    Not thread-safe beyond one lock around its connection; the dispatcher calls
    it from its tick loop only.
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS runtimes (description TEXT PRIMARY KEY,"
                " runs INTEGER NOT NULL, mean_log REAL NOT NULL, updated_at TEXT NOT NULL)"
            )
            self._db.commit()
            rows = self._db.execute("SELECT description, runs, mean_log FROM runtimes").fetchall()
        except (OSError, sqlite3.Error) as exc:
            raise BackendUnavailable(
                f"cannot open the runtime history {self.path}: {exc}: check state_dir is writable"
            ) from exc
        self._runs = {d: int(n) for d, n, _ in rows}
        self._mean_log = {d: float(m) for d, _, m in rows}
        self._estimates = {d: math.exp(m) for d, m in self._mean_log.items()}

    def observe(self, job: Job, runtime_s: float, at: datetime) -> float | None:
        """Learn from a run of `job` that passed in `runtime_s`; returns the new estimate.

        Jobs without a description, and runs under `MIN_RUNTIME_S`, teach nothing (None).
        """
        description = job.description
        if not description or not math.isfinite(runtime_s) or runtime_s < MIN_RUNTIME_S:
            return None
        sample = math.log(runtime_s)
        runs = self._runs.get(description, 0) + 1
        weight = max(1.0 / runs, ALPHA)
        mean = self._mean_log.get(description, sample)
        mean += weight * (sample - mean)
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO runtimes (description, runs, mean_log, updated_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT(description) DO UPDATE SET"
                    " runs = excluded.runs, mean_log = excluded.mean_log,"
                    " updated_at = excluded.updated_at",
                    (description, runs, mean, at.isoformat()),
                )
                self._db.commit()
            except sqlite3.Error as exc:
                # An estimate is advice: losing one update must not stop the dispatcher.
                log.warning("runtime history %s: cannot record a run: %s", self.path, exc)
        self._runs[description] = runs
        self._mean_log[description] = mean
        self._estimates = {**self._estimates, description: math.exp(mean)}
        return self._estimates[description]

    def estimates(self) -> Mapping[str, float]:
        """Estimated runtime in seconds per description (a new mapping after each change,
        so a snapshot keeps the one it was given)."""
        return self._estimates

    def runs(self, description: str) -> int:
        """How many passed runs of `description` the estimate is built on."""
        return self._runs.get(description, 0)

    def close(self) -> None:
        with self._lock:
            self._db.close()
