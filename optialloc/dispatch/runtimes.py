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

The history also measures its own skill: before learning from a run of a
description it has an estimate for, it scores that estimate (squared error of
log runtime) against the spread of all log runtimes seen (the error of
guessing one typical runtime for every job). `skill()` = 1 - the first / the
second, the R^2 of its predictions: about 0.7 in a lab where the same test
takes about as long every night, 0 or below where a description says nothing
of the runtime. A policy can then stop leaning on estimates that carry no
information (`weights.runtime_min_skill`, docs/policy.md): below it every
description gets one typical runtime. The measure lives
in memory (it restarts with `serve`; until `MIN_SCORED` runs are scored the
skill is unknown: None; estimates are used as they are until then).

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
#: scored predictions needed before `skill()` says anything
MIN_SCORED = 50


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
        # skill: squared log errors of predictions, and Welford moments of all log runtimes
        self._scored = 0
        self._sq_error = 0.0
        self._seen = 0
        self._mean_all = 0.0
        self._m2_all = 0.0
        self._flat: dict[str, float] | None = None  # trusted_estimates below the skill

    def observe(self, job: Job, runtime_s: float, at: datetime) -> float | None:
        """Learn from a run of `job` that passed in `runtime_s`; returns the new estimate.

        Jobs without a description, and runs under `MIN_RUNTIME_S`, teach nothing (None).
        """
        description = job.description
        if not description or not math.isfinite(runtime_s) or runtime_s < MIN_RUNTIME_S:
            return None
        sample = math.log(runtime_s)
        self._score(description, sample)
        self._flat = None
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

    def _score(self, description: str, sample: float) -> None:
        prior = self._mean_log.get(description)
        if prior is not None and self._seen >= 2:
            self._scored += 1
            self._sq_error += (sample - prior) ** 2
        self._seen += 1
        delta = sample - self._mean_all
        self._mean_all += delta / self._seen
        self._m2_all += delta * (sample - self._mean_all)

    def skill(self) -> float | None:
        """R^2 of the estimates on the runs they predicted (1 - mean squared log error /
        variance of log runtimes); None until `MIN_SCORED` predictions were scored."""
        if self._scored < MIN_SCORED or self._seen < 2:
            return None
        variance = self._m2_all / (self._seen - 1)
        if variance <= 0:
            return 1.0 if self._sq_error == 0 else 0.0
        return 1.0 - (self._sq_error / self._scored) / variance

    def trusted_estimates(self, min_skill: float) -> Mapping[str, float]:
        """`estimates()` while their measured `skill()` is at least `min_skill` (or it is
        not known yet, or `min_skill` is 0); below it, every description gets the same
        typical runtime (the geometric mean of all runs seen): no job is ranked by
        noise, and backfill around holds still has a runtime to work with."""
        skill = self.skill()
        if min_skill <= 0 or skill is None or skill >= min_skill:
            return self._estimates
        if self._flat is None:
            typical = math.exp(self._mean_all)
            self._flat = dict.fromkeys(self._estimates, typical)
        return self._flat

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
