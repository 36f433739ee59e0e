"""Plan check, fairness caps: no owner or run takes more than its share of a machine type.

With `fairness.peers_only`, a cap binds only against equally or more urgent
rivals that wait; with `fairness.work_conserving`, rivals already at their
own cap do not count as waiting (docs/policy.md, "Fairness").
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable
from operator import attrgetter

from optialloc.check.state import CheckState
from optialloc.domain import Job
from optialloc.ranking import (
    effective_priority_at_fn,
)

_QUEUED_AT = attrgetter("queued_at")
_JOB_ID = attrgetter("job_id")


class FairnessRules(CheckState):
    """The fairness-cap rule, per dimension (`owner` or `run`)."""

    def fairness(self, dimension: str, share: float) -> None:
        if share >= 1.0:
            return

        def who(j: Job) -> str:
            return j.owner if dimension == "owner" else j.run

        base = self.share_base

        def share_of(machine_type: str) -> int:
            return math.ceil(share * base[machine_type] - 1e-9)

        used: Counter[tuple[str, str]] = Counter()
        for rj in self.s.running:
            for name in rj.nodes:
                if name in self.nodes:
                    used[(who(rj.job), self.nodes[name].machine_type)] += 1
        before = used.copy()  # running jobs only: what work_conserving compares with caps
        new: Counter[tuple[str, str]] = Counter()
        for start in self.plan.starts:
            job = self.jobs.get(start.job_id)
            if job is None or not start.nodes or start.nodes[0] not in self.nodes:
                continue
            key = (who(job), self.nodes[start.nodes[0]].machine_type)
            used[key] += len(start.nodes)
            if start.job_id not in self.reserved:
                new[key] += len(start.nodes)
        # A cap is never below its share of the type, so only names over that can
        # break one; most plans have none, and then the waiting rivals need no look.
        over = [k for k in sorted(new) if used[k] > share_of(k[1])]
        if not over:
            return
        waiting_types: dict[str, set[str]] = defaultdict(set)
        largest: dict[tuple[str, str], int] = defaultdict(int)
        for profile in self.candidates:
            name = who(profile.job)
            for t in profile.job.machine_types:
                waiting_types[t].add(name)
                largest[(name, t)] = max(largest[(name, t)], profile.job.nodes_needed)

        def cap_of(name: str, machine_type: str) -> int:
            """The cap docs/policy.md gives `name` on the type: its share, or its largest job."""
            return max(share_of(machine_type), largest[(name, machine_type)])

        best = self._best_priority(who) if self.p.fairness.peers_only else {}
        for key in over:
            name, machine_type = key
            rivals = waiting_types[machine_type] - {name}
            if best:
                # peers_only: only rivals at least as urgent as this name's best job count
                mine = best.get(key, math.inf)
                rivals = {r for r in rivals if best[(r, machine_type)] <= mine}
            if self.p.fairness.work_conserving:
                # a rival at its own cap (before this plan) cannot use the nodes
                rivals = {r for r in rivals if before[(r, machine_type)] < cap_of(r, machine_type)}
            if not rivals:
                continue  # nobody else (that counts) waits for this type: no cap
            cap = cap_of(name, machine_type)
            if used[key] > cap:
                self.out.append(
                    f"{dimension} {name}: holds {used[key]} {machine_type} nodes after this plan, "
                    f"cap is {cap} ({share:.0%} of {base[machine_type]}) while others wait"
                )

    def _best_priority(self, who: Callable[[Job], str]) -> dict[tuple[str, str], float]:
        """Best effective priority of the eligible jobs of each (owner or run, type).

        Aging only lowers a job's effective priority as it waits, and the usage
        penalty depends on the owner alone, so a profile's best is its oldest job's.
        """
        effective = effective_priority_at_fn(self.s.taken_at, self.p, self.s.usage)
        best: dict[tuple[str, str], float] = {}
        for profile in self.candidates:
            j = profile.job
            eff = effective(j.priority, j.owner, profile.oldest)
            for t in j.machine_types:
                if eff < best.get((who(j), t), math.inf):
                    best[(who(j), t)] = eff
        return best
