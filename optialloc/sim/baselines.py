"""The schedulers optialloc is compared with, each on the same `engine`.

- `Fcfs`: strict first-come-first-served per machine type (head-of-line blocking).
- `TeuthologyToday`: one dispatcher per tube (each type plus `multi`), most
  urgent job first, blocking on its nodes, tubes racing, 5 nodes kept back
  from `scheduled*` owners (teuthology-interfaces.md section 2).
- `Easy`: EASY backfill, one reservation per machine type, with a runtime
  estimate (perfect, or `max_job_time`).
- `Greedy`: every queued job in (priority, submit) order, started on the
  first of its types with enough free nodes; no holds (work-conserving; big
  jobs starve behind streams of small ones). What a policy must beat on
  throughput without its starvation.
- `RLSchedulerBackfill`: the simplified EASY of the RLScheduler paper, only
  to reproduce its published table (docs/whatif.md, "Validation").

Contract of every class: `decide` only starts jobs that fit the free nodes it
is shown (the engine re-checks), never starts a job twice, and keeps the rest.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence

from optialloc.sim.engine import ClusterState, Launch
from optialloc.sim.model import JobRecord, SimJob, TickStat

#: teuthology's `reserve_machines` default: nodes a scheduled run must leave free.
TEUTHOLOGY_RESERVE = 5
#: teuthology's default `max_job_time` (seconds), the estimate of `easy-maxtime`.
MAX_JOB_TIME = 259200

Estimate = Callable[[SimJob], float]


def perfect_estimate(job: SimJob) -> float:
    """The job's true runtime (an oracle)."""
    return job.runtime


def requested_estimate(job: SimJob) -> float:
    """The job's own requested time (SWF field 9), else its runtime."""
    return job.runtime if job.estimate is None else job.estimate


def queue_key(job: SimJob) -> tuple[int, float, int]:
    """teuthology's queue order: priority (lower first), then submission."""
    return (job.priority, job.submit, job.index)


class _Base:
    name = "base"

    def __init__(self) -> None:
        self.ticks: list[TickStat] = []
        self.queue: list[SimJob] = []

    def arrive(self, job: SimJob, now: float) -> None:
        self.queue.append(job)

    def complete(self, record: JobRecord, now: float) -> None:
        pass

    def queued(self) -> int:
        return len(self.queue)

    def decide(self, now: float, cluster: ClusterState) -> Sequence[Launch]:
        raise NotImplementedError

    def _drop(self, started: set[str]) -> None:
        if started:
            self.queue = [j for j in self.queue if j.job_id not in started]


class Fcfs(_Base):
    """Strict FCFS per machine type: a type's head blocks that type.

    A job accepting several types waits in each of their lines and starts on
    the first (in its own order) where it is at the head and fits.
    """

    name = "fcfs"

    def decide(self, now: float, cluster: ClusterState) -> Sequence[Launch]:
        free = {mt: cluster.free(mt) for mt in cluster.capacity}
        blocked: set[str] = set()
        launches: list[Launch] = []
        for job in self.queue:  # arrival order = (submit, index)
            open_types = [mt for mt in job.machine_types if mt not in blocked]
            if not open_types:
                continue
            for mt in open_types:
                if free.get(mt, 0) >= job.nodes:
                    free[mt] -= job.nodes
                    launches.append(Launch(job, mt))
                    break
            else:
                blocked.update(open_types)
                if len(blocked) >= len(free):
                    break
        self._drop({launch.job.job_id for launch in launches})
        return launches


class RLSchedulerBackfill(_Base):
    """RLScheduler's "FCFS + backfill" (HPCSimPickJobs.py), for one machine type.

    While the head does not fit: its earliest start `est` is the requested end
    of the running job at which enough nodes would be free (running jobs in
    requested-end order), computed once when the job becomes the blocked head
    and kept until it starts; any queued job that fits now and whose
    `now + requested time < est` starts, in submission order.
    """

    name = "fcfs-backfill"

    def __init__(self) -> None:
        super().__init__()
        self._head: str | None = None
        self._est = 0.0

    def decide(self, now: float, cluster: ClusterState) -> Sequence[Launch]:
        if len(cluster.capacity) != 1:
            raise ValueError("fcfs-backfill reproduces a one-machine-type paper setup only")
        (mt,) = cluster.capacity
        free = cluster.free(mt)
        launches: list[Launch] = []
        started: set[str] = set()
        queue = self.queue
        k = 0
        while k < len(queue):
            head = queue[k]
            if head.nodes <= free:
                free -= head.nodes
                launches.append(Launch(head, mt))
                started.add(head.job_id)
                k += 1
                continue
            if self._head != head.job_id:
                self._head = head.job_id
                self._est = self._earliest_start(head, free, now, cluster, launches)
            for job in queue[k + 1 :]:
                if free == 0:
                    break
                if job.nodes <= free and now + requested_estimate(job) < self._est:
                    free -= job.nodes
                    launches.append(Launch(job, mt))
                    started.add(job.job_id)
            break
        self._drop(started)
        return launches

    @staticmethod
    def _earliest_start(
        head: SimJob, free: int, now: float, cluster: ClusterState, launches: list[Launch]
    ) -> float:
        ends = [(r.start or 0.0) + requested_estimate(r.job) for r in cluster.running.values()]
        nodes = [r.job.nodes for r in cluster.running.values()]
        ends += [now + requested_estimate(la.job) for la in launches]
        nodes += [la.job.nodes for la in launches]
        est = now
        for end, n in sorted(zip(ends, nodes, strict=True), key=lambda p: p[0]):
            free += n
            est = end
            if free >= head.nodes:
                break
        return est


class Easy(_Base):
    """EASY backfill in queue order, one reservation per machine type.

    The first job (in queue order) that cannot start gets a reservation on
    its type with the earliest estimated start (the "shadow" time) if that
    type has none yet; a later job may start now on a type with a reservation
    only if it ends (by its estimate) by the shadow time, or uses only the
    nodes the reserved job will not need then. So the reserved job is never
    delayed as long as estimates hold.
    """

    def __init__(self, estimate: Estimate, name: str = "easy") -> None:
        super().__init__()
        self.estimate = estimate
        self.name = name

    def decide(self, now: float, cluster: ClusterState) -> Sequence[Launch]:
        free = {mt: cluster.free(mt) for mt in cluster.capacity}
        if not any(free.values()):
            return []
        # estimated ends of running jobs per type (an overrun job ends "now")
        ends: dict[str, list[tuple[float, int]]] = {mt: [] for mt in cluster.capacity}
        for r in cluster.running.values():
            if r.machine_type is not None:
                end = max((r.start or 0.0) + self.estimate(r.job), now)
                ends[r.machine_type].append((end, r.job.nodes))
        shadow: dict[str, tuple[float, int]] = {}
        launches: list[Launch] = []
        self.queue.sort(key=queue_key)
        for job in self.queue:
            estimate = self.estimate(job)
            for mt in job.machine_types:
                if free.get(mt, 0) < job.nodes:
                    continue
                if mt in shadow:
                    at, extra = shadow[mt]
                    if now + estimate <= at:
                        pass
                    elif job.nodes <= extra:
                        shadow[mt] = (at, extra - job.nodes)
                    else:
                        continue
                free[mt] -= job.nodes
                ends[mt].append((now + estimate, job.nodes))
                launches.append(Launch(job, mt))
                break
            else:
                best: tuple[float, int, str] | None = None
                for mt in job.machine_types:
                    if mt in shadow or cluster.capacity.get(mt, 0) < job.nodes:
                        continue
                    avail = free[mt]
                    for end, n in sorted(ends[mt]):
                        avail += n
                        if avail >= job.nodes:
                            if best is None or end < best[0]:
                                best = (end, avail - job.nodes, mt)
                            break
                if best is not None:
                    shadow[best[2]] = (best[0], best[1])
            if not any(free.values()):
                break
        self._drop({la.job.job_id for la in launches})
        return launches


class Greedy(_Base):
    """Priority order, work-conserving, no holds: start whatever fits, most urgent first."""

    name = "greedy"

    def decide(self, now: float, cluster: ClusterState) -> Sequence[Launch]:
        free = {mt: cluster.free(mt) for mt in cluster.capacity}
        smallest = min((j.nodes for j in self.queue), default=0)
        launches: list[Launch] = []
        self.queue.sort(key=queue_key)
        for job in self.queue:
            for mt in job.machine_types:
                if free.get(mt, 0) >= job.nodes:
                    free[mt] -= job.nodes
                    launches.append(Launch(job, mt))
                    break
            if smallest > 0 and max(free.values(), default=0) < smallest:
                break
        self._drop({la.job.job_id for la in launches})
        return launches


class TeuthologyToday(_Base):
    """teuthology's dispatchers as they are: one per tube, racing.

    Each tube's dispatcher takes its most urgent job (priority, then
    submission) and then blocks on that job until it can lock the job's
    nodes of one of its machine types (in the job's order); a `scheduled*`
    owner may lock only if `reserve` more nodes stay free. When nodes free
    up, the tubes poll in a random order (seeded): the first to poll wins and
    keeps dispatching until it blocks.
    """

    name = "teuthology"

    def __init__(self, reserve: int = TEUTHOLOGY_RESERVE, seed: int = 0) -> None:
        super().__init__()
        self.reserve = reserve
        self.rng = random.Random(seed)
        self.tubes: dict[str, list[tuple[int, float, int, SimJob]]] = {}
        self.current: dict[str, SimJob] = {}
        self.count = 0

    def arrive(self, job: SimJob, now: float) -> None:
        heap = self.tubes.setdefault(job.tube, [])
        if job.tube not in self.current and not heap:
            # an idle dispatcher waiting in `reserve` gets the job the moment it is put
            self.current[job.tube] = job
        else:
            heapq.heappush(heap, (*queue_key(job), job))
        self.count += 1

    def queued(self) -> int:
        return self.count

    def _lock_type(self, job: SimJob, free: dict[str, int]) -> str | None:
        need = job.nodes + (self.reserve if job.owner.startswith("scheduled") else 0)
        for mt in job.machine_types:
            if free.get(mt, 0) >= need:
                return mt
        return None

    def decide(self, now: float, cluster: ClusterState) -> Sequence[Launch]:
        free = {mt: cluster.free(mt) for mt in cluster.capacity}
        order = sorted(self.tubes)
        self.rng.shuffle(order)
        launches: list[Launch] = []
        for tube in order:
            heap = self.tubes[tube]
            while True:
                job = self.current.get(tube)
                if job is None:
                    if not heap:
                        break
                    job = heapq.heappop(heap)[3]
                    self.current[tube] = job  # reserved and buried: the dispatcher blocks on it
                mt = self._lock_type(job, free)
                if mt is None:
                    break
                free[mt] -= job.nodes
                launches.append(Launch(job, mt))
                del self.current[tube]
                self.count -= 1
        return launches


BASELINES = ("fcfs", "teuthology", "easy", "easy-maxtime", "greedy")


def make_baseline(name: str, *, seed: int = 0, max_job_time: float = MAX_JOB_TIME) -> _Base:
    """A fresh baseline scheduler by its CLI name (see `BASELINES`)."""
    if name == "fcfs":
        return Fcfs()
    if name == "teuthology":
        return TeuthologyToday(seed=seed)
    if name == "easy":
        return Easy(perfect_estimate, name="easy")
    if name == "easy-maxtime":
        return Easy(lambda job: max_job_time, name="easy-maxtime")
    if name == "greedy":
        return Greedy()
    if name == "fcfs-backfill":
        return RLSchedulerBackfill()
    raise ValueError(
        f"unknown baseline {name!r}: choose from {', '.join((*BASELINES, 'fcfs-backfill'))}"
    )
