"""Queue states where pulpito shows them: `queued`, `waiting` and invalid jobs as `dead`.

The commit path reports what happens to a job once it starts (`running`,
then `pass`/`fail`/`dead`). This reports what happens before: after each
tick, every queued job's status in the results server is brought in line
with the dispatcher's view of it, once per change:

- `queued`: in the queue (pulpito's "The Queue" page, paddles'
  `GET /runs/queued/`). A job ingested from beanstalkd is reported as soon
  as it is seen; where teuthology-schedule already created its record (same
  run, same job id: the beanstalk id), the record is updated, not duplicated.
- `waiting`: the dispatcher holds nodes back for it (a reservation: picked,
  acquiring its nodes, in paddles' sense of `waiting`); back to `queued` if
  the hold is dropped.
- removed (`DELETE /runs/<run>/jobs/<job_id>/`): a job deleted from the queue
  before it started (`optialloc queue delete`), as `teuthology-queue --delete`
  does.
- `dead` with `failure_reason`: a job that can never run here (the plan's
  `invalid` reason: no node of its machine type, more nodes than the lab
  has, ...), and a job buried on entry (its body does not parse), with the
  reason. A dead job that becomes runnable again (nodes added, kicked) goes
  back to `queued`.

It asks the reporter for the last status written per job (`last_status`;
the outbox keeps it across restarts), so a restart repeats nothing and a
tick that changes nothing reports nothing. A reporter without `last_status`
(no results server, the simulator) turns this off. Cost: one dict lookup
per queued job per tick, at most `MAX_PER_TICK` reports written per tick (a
big queue is announced over several ticks, most urgent first); buried jobs
are read at most every `BURIED_EVERY_S`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC

from optialloc.domain import Job, Plan, WaitReason
from optialloc.inventory.reporter import DELETED
from optialloc.ports import BuriedJob, JobQueue, Reporter

log = logging.getLogger(__name__)

#: Seconds between reads of the buried jobs (a store query; beanstalkd ingest first).
BURIED_EVERY_S = 10.0
#: Reports written per tick at most: a first tick over 20,000 queued jobs would
#: otherwise build 20,000 job dicts (each a full body parse) in one tick. The
#: rest follow in the next ticks, most urgent first.
MAX_PER_TICK = 500
#: Statuses paddles keeps for good; a queued job never overrides them.
FINAL = frozenset({"pass", "fail"})

Item = tuple[Job, str, dict[str, object]]


class Announcer:
    """See the module docstring. `observe` after each tick; never raises."""

    def __init__(self, reporter: Reporter, queue: JobQueue) -> None:
        self.reporter = reporter
        self.queue = queue
        last: Callable[[str], str | None] | None = getattr(reporter, "last_status", None)
        self._last = last
        self._buried_at = 0.0
        self._listed: dict[str, Job] = {}  # the queue of the last observation, by id

    @property
    def enabled(self) -> bool:
        return self._last is not None

    def observe(self, queue: Sequence[Job], plan: Plan | None) -> int:
        """Report the changes of this tick's queue (`plan`: its plan, if one was made)."""
        if self._last is None:
            return 0
        try:
            items = self._changes(queue, plan)
            gone = self._gone(queue)
            if gone or time.monotonic() - self._buried_at >= BURIED_EVERY_S:
                self._buried_at = time.monotonic()
                buried = self._buried()
                items += buried
                dead = {job.job_id for job, _, _ in buried}
                items += [(job, DELETED, {}) for job in gone if job.job_id not in dead]
            return self._send(items[:MAX_PER_TICK])
        except Exception:  # reporting must never stop a tick
            log.exception("announcing queue states failed; trying again next tick")
            return 0

    def _changes(self, queue: Sequence[Job], plan: Plan | None) -> list[Item]:
        assert self._last is not None
        last = self._last
        held = {h.for_job_id for h in plan.held} if plan is not None else set()
        invalid: dict[str, str] | None = None
        if plan is not None and plan.explained:
            invalid = {
                w.job_id: w.detail or "cannot run in this lab"
                for w in plan.waiting
                if w.reason is WaitReason.INVALID
            }
        items: list[Item] = []
        for job in queue:
            if len(items) >= MAX_PER_TICK:
                break
            now = last(job.job_id)
            if now in FINAL or now in ("running", DELETED):
                continue  # started (this very tick, perhaps): the commit path reports it
            if invalid is None:
                if now == "dead":
                    continue  # no explanation this tick: keep what the last one said
                want = "waiting" if job.job_id in held else "queued"
            elif job.job_id in invalid:
                want = "dead"
            else:
                want = "waiting" if job.job_id in held else "queued"
            if want == now:
                continue
            if want == "dead":
                assert invalid is not None
                reason = f"cannot run in this lab: {invalid[job.job_id]}"
                items.append((job, "dead", {"failure_reason": reason}))
            else:
                items.append((job, want, {}))
        return items

    def _gone(self, queue: Sequence[Job]) -> list[Job]:
        """Jobs announced as queued or waiting that left the queue without starting: deleted
        (`queue delete`) or buried. Reported like `teuthology-queue --delete` does: the record
        is removed; a buried one is reported `dead` by `_buried` instead."""
        assert self._last is not None
        listed = {job.job_id: job for job in queue}
        gone = [
            job
            for job_id, job in self._listed.items()
            if job_id not in listed and self._last(job_id) in ("queued", "waiting")
        ]
        self._listed = listed
        return [job for job in gone if self.queue.get(job.job_id) is None]  # not being started

    def _buried(self) -> list[Item]:
        assert self._last is not None
        items: list[Item] = []
        for buried in self.queue.buried():
            if self._last(buried.job_id) in ("dead", DELETED, *FINAL):
                continue
            job = _job_of(buried)
            if job is not None:
                items.append((job, "dead", {"failure_reason": buried.reason or "buried"}))
        return items

    def _send(self, items: list[Item]) -> int:
        if not items:
            return 0
        many = getattr(self.reporter, "report_many", None)
        if many is not None:
            written = int(many(items))
        else:
            for job, status, fields in items:
                self.reporter.report(job, status, **fields)
            written = len(items)
        log.debug("announced %d queue state change(s)", written)
        return written


def _job_of(buried: BuriedJob) -> Job | None:
    """A `Job` to report a buried entry with: from its body if it parses, else its bare fields."""
    from optialloc.queue.parse import load_mapping

    try:
        mapping = load_mapping(buried.body)
    except Exception:  # not YAML at all: nothing to name the run with
        mapping = {}
    run = mapping.get("name") if isinstance(mapping, dict) else None
    if not isinstance(run, str) or not run:
        log.info("buried job %s has no run `name`: it cannot be shown in pulpito", buried.job_id)
        return None
    priority = mapping.get("priority")
    description = mapping.get("description")
    return Job(
        job_id=buried.job_id,
        run=run,
        owner=str(mapping.get("owner") or ""),
        priority=priority if isinstance(priority, int) else 1000,
        machine_types=(str(mapping.get("machine_type") or buried.tube),),
        nodes_needed=0,
        queued_at=buried.buried_at.astimezone(UTC),
        tube=buried.tube,
        description=description if isinstance(description, str) else None,
        body=mapping,
    )
