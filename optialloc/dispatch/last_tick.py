"""The last tick's figures and the dispatcher's running totals, persisted for other processes.

`serve` keeps the solver status, objective, gap, phase times, starts and held
nodes of each tick only in memory; the web view (`optialloc web`, another
process) and its Prometheus metrics need them. `TickRecorder.record(report)`
is called once per tick by the serve loop (its `on_tick` hook) and writes one
small JSON file, `<state_dir>/last_tick.json`, atomically (temporary file,
then `os.replace`), so a reader never sees half a record. Besides the last
tick it carries totals since this serve started (jobs started, finished,
failed by reason class, lock failures, backend outages) and cumulative
histogram buckets of tick and solver wall times: counters a scraper can rate.

Cost per tick: one JSON dump of a few kilobytes and one rename (well under a
millisecond). A failed write is logged and never fails the tick.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from optialloc.dispatch.dispatcher import TickReport

log = logging.getLogger(__name__)

LAST_TICK_FILE = "last_tick.json"
#: Upper bounds (seconds) of the tick and solver time histogram buckets (Prometheus `le`).
TIME_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
#: Held nodes listed in the record at most (the count is always exact).
MAX_HELD_LISTED = 500


def reason_class(reason: str) -> str:
    """A short, stable class for a failure reason (a metric label must not be free text)."""
    text = reason.lower()
    for needle, label in (
        ("lock", "lock_failed"),
        ("time limit", "time_limit"),
        ("max_job_time", "time_limit"),
        ("progress", "no_progress"),
        ("pars", "malformed"),
        ("invalid", "malformed"),
        ("launch", "launch_failed"),
        ("exit 12", "launch_failed"),
        ("not found", "launch_failed"),
        ("unreachable", "backend_unavailable"),
        ("unavailable", "backend_unavailable"),
    ):
        if needle in text:
            return label
    return "other"


class _Histogram:
    def __init__(self) -> None:
        self.buckets = [0] * len(TIME_BUCKETS_S)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, bound in enumerate(TIME_BUCKETS_S):
            if value <= bound:
                self.buckets[i] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "le": list(TIME_BUCKETS_S),
            "buckets": self.buckets,
            "count": self.count,
            "sum": round(self.sum, 6),
        }


class TickRecorder:
    """Writes `last_tick.json` in `state_dir` after each tick (see the module docstring)."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, LAST_TICK_FILE)
        self.started_at = datetime.now(UTC).isoformat()
        self.totals: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.tick_s = _Histogram()
        self.solver_s = _Histogram()

    def record(self, report: TickReport) -> None:
        """Add `report` to the totals and replace the file; never raises."""
        try:
            self._write(self._payload(report))
        except Exception:  # a view's record must never stop the dispatcher
            log.exception("last tick record %s not written", self.path)

    def _payload(self, report: TickReport) -> dict[str, Any]:
        self.totals["started"] += len(report.started)
        self.totals["finished"] += len(report.finished)
        self.totals["ticks"] += 1
        if report.error:
            self.totals["backend_outages"] += 1
        if report.rejected:
            self.totals["plans_rejected"] += 1
        for _job_id, reason in report.failed:
            label = reason_class(reason)
            self.failed[label] += 1
            if label == "lock_failed":
                self.totals["lock_failures"] += 1
        self.tick_s.observe(report.tick_s)
        plan = report.plan
        if plan is not None:
            self.solver_s.observe(plan.solver.wall_s)
        solver = plan.solver if plan is not None else None
        return {
            "tick": report.tick,
            "taken_at": report.taken_at.isoformat(),
            "written_at": datetime.now(UTC).isoformat(),
            "serve_started_at": self.started_at,
            "pending": report.pending,
            "running": report.running,
            "started": list(report.started),
            "finished": [job_id for job_id, _status in report.finished],
            "failed": [{"job_id": j, "reason": r} for j, r in report.failed],
            "held_count": len(plan.held) if plan else 0,
            "held": [
                {"node": h.node, "for_job_id": h.for_job_id}
                for h in (plan.held[:MAX_HELD_LISTED] if plan else ())
            ],
            "solver": None
            if solver is None
            else {
                "status": solver.status,
                "objective": solver.objective,
                "bound": solver.bound,
                "gap": solver.gap,
                "wall_s": solver.wall_s,
                "variables": solver.variables,
                "constraints": solver.constraints,
                "explained": plan.explained if plan else False,
            },
            "times_s": {
                "tick": report.tick_s,
                "solver": report.solver_s,
                "validate": report.validate_s,
                "commit": report.commit_s,
            },
            "error": report.error,
            "rejected": list(report.rejected[:20]),
            "totals": dict(self.totals),
            "failed_by_class": dict(self.failed),
            "histograms": {"tick_s": self.tick_s.as_dict(), "solver_s": self.solver_s.as_dict()},
        }

    def _write(self, payload: dict[str, Any]) -> None:
        directory = os.path.dirname(self.path) or "."
        fd, tmp = tempfile.mkstemp(prefix=".last_tick.", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, separators=(",", ":"))
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def read_last_tick(state_dir: str) -> dict[str, Any] | None:
    """The last record written in `state_dir`, or None when no serve has ticked there."""
    path = os.path.join(state_dir, LAST_TICK_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("last tick record %s unreadable: %s", path, exc)
        return None
    return data if isinstance(data, dict) else None
