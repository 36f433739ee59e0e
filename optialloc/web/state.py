"""What the web view shows, read from the state a `serve` keeps, off the request path.

`LabReader` owns every connection to the lab's state (queue store, journal,
inventory, runtime history, `last_tick.json`) and is used by one thread only,
the refresher (`optialloc.web.refresher`). Each `read()` builds a new,
immutable `LabView` (plain dicts and tuples) that request handlers only look
at: a request never touches SQLite, so a slow request cannot hold a lock the
dispatcher waits for, and 20,000 queued jobs are filtered in memory.

Reads only, with two exceptions inherited from the shared readers: opening a
store creates its schema if missing, and `QueueView` buries a row whose body
was edited behind the dispatcher's back and no longer parses. The queue is
followed incrementally (`QueueView`), so a refresh with nothing new costs a
few milliseconds.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from optialloc.config import Config
from optialloc.dispatch.journal import JOURNAL_FILE, Journal
from optialloc.dispatch.last_tick import read_last_tick
from optialloc.dispatch.runtimes import RUNTIMES_FILE, RuntimeHistory
from optialloc.dispatch.serve import read_policy
from optialloc.dispatch.usage import HISTORY_S, UsageMeter
from optialloc.domain import Job, Node, RunningJob, Snapshot
from optialloc.inventory import open_embedded
from optialloc.inventory.embedded import EmbeddedInventory, UsageRow
from optialloc.queue import open_queue
from optialloc.queue.admin import buried_records, stats_records
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.queue.view import QueueView
from optialloc.ranking import effective_priority_at_fn, usage_shares
from optialloc.sim.metrics import band_of

log = logging.getLogger(__name__)

#: Job records are rebuilt at most this often when the queue changes (seconds) ...
MIN_REBUILD_S = 2.0
#: ... and a rebuild waits at least this many times the last one's duration.
REBUILD_FACTOR = 10.0
#: The journal (positions, running jobs, usage) is re-read on each new tick and this often.
JOURNAL_EVERY = timedelta(seconds=10)
#: Nodes and usage are re-read on each new tick and at least this often (seconds).
NODES_EVERY_S = 5.0
#: How long a read retries an unreachable beanstalkd before the refresh reports it (seconds).
READ_RETRY_S = 1.0
#: Records are rebuilt at least this often (ages and aging move on), seconds.
REBUILD_EVERY_S = 15.0
ACTIVE = ("intent", "locked", "launching", "running")


@dataclass(frozen=True)
class LabView:
    """One consistent picture of the lab for the request handlers (never mutated)."""

    built_at: datetime
    jobs: tuple[dict[str, Any], ...] = ()  # pending jobs in dispatch order
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    queued: Counter[tuple[str, str]] = field(default_factory=Counter)  # (tube, band): jobs
    runs: tuple[dict[str, Any], ...] = ()
    nodes: tuple[dict[str, Any], ...] = ()
    usage: tuple[dict[str, Any], ...] = ()
    tubes: tuple[dict[str, Any], ...] = ()
    buried: tuple[dict[str, Any], ...] = ()
    last_tick: dict[str, Any] | None = None
    estimates_note: str = "estimates not computed yet"
    estimates_at: datetime | None = None
    error: str | None = None  # the last refresh failed: what is shown is older


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class LabReader:
    """The refresher thread's handles on the lab's state (see the module docstring)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.policy = read_policy(config)
        # read_only: with beanstalkd, jobs are peeked and nothing is changed there
        queue = open_queue(config, retry_s=READ_RETRY_S, read_only=True)
        assert isinstance(queue, EmbeddedQueue)  # every adapter keeps optialloc's store
        self.queue = queue
        self.view = QueueView(queue.store)
        self.inventory: Any = None
        self._journal: Journal | None = None
        self._positions: dict[str, tuple[int, str, str]] = {}
        self._tick_seen: object = object()
        self._change_seen = -1
        self._built_at = self._nodes_at = self._journal_at = datetime.min.replace(tzinfo=UTC)
        self._rebuild_s = 0.0
        self._cache: dict[str, Any] = {}
        self.running: list[RunningJob] = []
        self.usage_values: dict[str, float] = {}

    def close(self) -> None:
        self.queue.close()
        if self._journal is not None:
            self._journal.close()
        close = getattr(self.inventory, "close", None)
        if close is not None:
            close()

    # -- sources ------------------------------------------------------------------
    def _journal_handle(self) -> Journal | None:
        path = os.path.join(self.config.state_dir, JOURNAL_FILE)
        if self._journal is None and os.path.exists(path):
            self._journal = Journal(path)
        return self._journal

    def _inventory(self) -> Any:
        if self.inventory is None:
            if self.config.lock_server:
                from optialloc.inventory import open_inventory

                self.inventory = open_inventory(self.config)
            else:  # never seed a lab from the view: that is serve's job
                self.inventory = open_embedded(self.config, seed=False)
        return self.inventory

    def _read_journal(self, now: datetime) -> None:
        """Positions, running jobs and decayed usage: re-read once per new tick."""
        journal = self._journal_handle()
        if journal is None:
            return
        self._positions = journal.positions()
        self.running = [
            RunningJob(r.job, r.nodes, r.started_at or r.created_at)
            for r in journal.open_rows()
            if r.state in ACTIVE and r.nodes
        ]
        meter = UsageMeter()
        meter.load(journal.finished_since(now - timedelta(seconds=HISTORY_S)))
        self.usage_values = meter.at(now, self.running)
        self._cache["run_outcomes"] = journal.outcomes_by_run()

    def runtime_estimates(self) -> dict[str, float]:
        path = os.path.join(self.config.state_dir, RUNTIMES_FILE)
        if not os.path.exists(path):
            return {}
        history = RuntimeHistory(path)
        try:
            return dict(history.estimates())
        finally:
            history.close()

    # -- the view ---------------------------------------------------------------------
    def read(
        self, estimates: dict[str, datetime] | None = None, *, urgent: bool = False
    ) -> LabView:
        """A fresh `LabView` (the caller publishes it); `estimates` by job id if known.

        Job records are rebuilt when something changed, at most every
        `MIN_REBUILD_S` and every `REBUILD_FACTOR` times the last rebuild's
        duration, unless `urgent` (after an admin action); and every
        `REBUILD_EVERY_S` in any case (ages and aging move on).
        """
        now = datetime.now(UTC)
        last = read_last_tick(self.config.state_dir)
        tick = (last or {}).get("tick")
        # a new tick, or a while without one (a serve that writes no record, a stopped one)
        new_tick = tick != self._tick_seen or now - self._journal_at >= JOURNAL_EVERY
        if new_tick:
            self._read_journal(now)
            self._tick_seen = tick
            self._journal_at = now
        change = id(self.pending())  # the same tuple until the queue changes
        since = (now - self._built_at).total_seconds()
        changed = new_tick or change != self._change_seen
        changed = changed or estimates is not self._cache.get("estimates")
        # Rebuilding 20,000 records costs a few hundred ms: at most a tenth of a core,
        # whatever the tick rate (an admin action asks for one at once with `urgent`).
        due = urgent or since >= max(self._rebuild_s * REBUILD_FACTOR, MIN_REBUILD_S)
        if "jobs" not in self._cache or (changed and due) or since >= REBUILD_EVERY_S:
            rebuild_t0 = time.perf_counter()
            jobs = self._job_records(now, estimates or {})
            self._cache.update(
                estimates=estimates,
                jobs=jobs,
                by_id={j["job_id"]: j for j in jobs},
                runs=self._run_records(jobs),
                queued=Counter((j["tube"], band_of(j["priority"])) for j in jobs),
                tubes=tuple(stats_records(self.queue.stats())),
                buried=tuple(buried_records(self.queue.buried())),
            )
            self._change_seen = change
            self._built_at = now
            self._rebuild_s = time.perf_counter() - rebuild_t0
        if new_tick or (now - self._nodes_at).total_seconds() >= NODES_EVERY_S:
            nodes = self._node_records()
            self._cache.update(nodes=nodes, usage=self._usage_records(nodes))
            self._nodes_at = now
        cache = self._cache
        return LabView(
            built_at=now,
            jobs=cache["jobs"],
            by_id=cache["by_id"],
            runs=cache["runs"],
            queued=cache["queued"],
            nodes=cache["nodes"],
            usage=cache["usage"],
            tubes=cache["tubes"],
            buried=cache["buried"],
            last_tick=last,
        )

    def pending(self) -> tuple[Job, ...]:
        """Pending jobs in queue order: from the store (embedded), or peeked (beanstalkd)."""
        if self.config.queue_backend == "beanstalk":
            return tuple(self.queue.pending())
        self.view.refresh()  # the embedded queue's `pending` would also start its validator
        return self.view.jobs("pending")

    def snapshot(self) -> Snapshot:
        """The lab as the dispatcher would see it now (for the start-time estimator)."""
        now = datetime.now(UTC)
        return Snapshot(
            taken_at=now,
            nodes=tuple(self._inventory().nodes()),
            queue=self.pending(),
            running=tuple(self.running),
            paused_tubes=self.queue.paused_tubes(),
            usage=dict(self.usage_values),
            runtime_estimates=self.runtime_estimates(),
        )

    def _job_records(
        self, now: datetime, estimates: dict[str, datetime]
    ) -> tuple[dict[str, Any], ...]:
        effective = effective_priority_at_fn(now, self.policy, self.usage_values)
        records: list[dict[str, Any]] = []
        keys: list[tuple[bool, int, int]] = []
        pending = self.pending()
        for order, job in enumerate(pending):
            position, reason, detail = self._positions.get(job.job_id, (None, None, None))
            start = estimates.get(job.job_id)
            records.append(
                {
                    "job_id": job.job_id,
                    "position": position,
                    "tube": job.tube,
                    "priority": job.priority,
                    "effective_priority": round(
                        effective(job.priority, job.owner, job.queued_at), 3
                    ),
                    "owner": job.owner,
                    "run": job.run,
                    "nodes_needed": job.nodes_needed,
                    "machine_types": list(job.machine_types),
                    "queued_at": job.queued_at.isoformat(),
                    "age_s": round(max(0.0, (now - job.queued_at).total_seconds()), 1),
                    "reason": reason,
                    "detail": detail,
                    "estimated_start": _iso(start),
                }
            )
            keys.append((position is None, position or 0, order))
        # dispatch order where the dispatcher ranked the jobs; newer jobs follow in queue order
        ranked = sorted(range(len(records)), key=keys.__getitem__)
        return tuple(records[i] for i in ranked)

    def _run_records(self, jobs: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        runs: dict[str, dict[str, Any]] = {}

        def run(name: str, owner: str = "") -> dict[str, Any]:
            if name not in runs:
                runs[name] = {
                    "run": name,
                    "owner": owner,
                    "counts": Counter(),
                    "positions": [],
                }
            return runs[name]

        for job in jobs:
            entry = run(job["run"], job["owner"])
            entry["counts"]["queued"] += 1
            if job["position"] is not None:
                entry["positions"].append(job["position"])
        for name, owner, status, count in self._cache.get("run_outcomes", ()):
            entry = run(name, owner)
            entry["owner"] = entry["owner"] or owner
            entry["counts"][status] += count
        out = []
        for entry in runs.values():
            entry["counts"] = dict(entry["counts"])
            entry["positions"] = sorted(entry["positions"])
            entry["first_position"] = entry["positions"][0] if entry["positions"] else None
            out.append(entry)
        out.sort(key=lambda r: (r["first_position"] is None, r["first_position"] or 0, r["run"]))
        return tuple(out)

    def _node_records(self) -> tuple[dict[str, Any], ...]:
        inventory = self._inventory()
        on_node: dict[str, RunningJob] = {n: rj for rj in self.running for n in rj.nodes}
        records = []
        nodes: list[Node] = inventory.nodes()
        for node in nodes:
            since = None
            if node.locked and isinstance(inventory, EmbeddedInventory):
                since = inventory.locked_since(node.name)
            job = on_node.get(node.name)
            state = "down" if not node.up else "locked" if node.locked else "free"
            records.append(
                {
                    "name": node.name,
                    "machine_type": node.machine_type,
                    "state": state,
                    "up": node.up,
                    "locked": node.locked,
                    "locked_by": node.locked_by,
                    "locked_since": _iso(since),
                    "description": node.description,
                    "job_id": job.job_id if job else None,
                    "run": job.job.run if job else None,
                }
            )
        return tuple(records)

    def _usage_records(self, nodes: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        """Locked nodes per owner per machine type (as `nodes usage`) with fair-share standing."""
        rows: list[UsageRow] = self._inventory().usage()
        per_type = Counter(n["machine_type"] for n in nodes if n["up"])
        fairness = self.policy.fairness
        shares = usage_shares(self.usage_values)
        by_owner: dict[str, list[UsageRow]] = defaultdict(list)
        for row in rows:
            by_owner[row.owner].append(row)
        for owner in shares:
            by_owner.setdefault(owner, [])
        out = []
        for owner, owned in sorted(by_owner.items()):
            types = []
            for row in owned:
                total = per_type.get(row.machine_type, 0)
                cap = None
                if fairness.owner_max_share < 1.0 and total:  # as docs/policy.md counts it
                    cap = math.ceil(fairness.owner_max_share * total - 1e-9)
                types.append(
                    {
                        "machine_type": row.machine_type,
                        "locked": row.locked,
                        "share_of_type": round(row.locked / total, 4) if total else None,
                        "cap": cap,
                        "at_cap": cap is not None and row.locked >= cap,
                    }
                )
            share = shares.get(owner, 0.0)
            out.append(
                {
                    "owner": owner,
                    "locked": sum(r.locked for r in owned),
                    "by_machine_type": types,
                    "usage_node_hours": round(self.usage_values.get(owner, 0.0) / 3600.0, 2),
                    "usage_share": round(share, 4),
                    "priority_factor": round(1.0 + fairness.usage_penalty * share, 4),
                }
            )
        return tuple(out)
