"""Every policy knob through the real dispatcher on a busy small lab: no plan is rejected.

The hypothesis properties check solver and validator on random single snapshots;
this replays two busy days (a backlog, nightlies, PR runs, learned runtime
estimates, jobs running and finishing) through `Dispatcher.tick()` with the
knobs a lab may turn on. A solver/validator disagreement that only shows with
learned estimates (as `head_of_queue` had: every plan refused) fails here.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from optialloc.policy import Policy, policy_from_mapping
from optialloc.sim.engine import simulate
from optialloc.sim.generate import WeekParams, generate
from optialloc.sim.optialloc_sched import OptiallocScheduler
from optialloc.sim.scenario import lab_nodes
from tests.conftest import FIXTURES, REPO

#: Two days on the demo lab (8 smithi, 3 up mira, 2 gibba), more work than it clears.
BUSY = WeekParams(
    seed=11,
    days=2,
    nightlies=(
        ("rados", "smithi", 25, 35),
        ("krbd", "mira", 8, 12),
        ("upgrade", "smithi,mira", 4, 8),
    ),
    pr_runs_per_day=6,
    pr_jobs=(4, 12),
    other_runs_per_day=2,
    urgent_runs_per_day=1,
    day_types=(("smithi", 0.7), ("mira", 0.2), ("smithi,mira", 0.1)),
    nodes=((1, 0.45), (2, 0.35), (3, 0.2)),
    runtime_median_s=1800,
    runtime_sigma=0.8,
    runtime_per_description=0.75,
    hang_fraction=0.0,
    backlog_jobs=30,
)

#: Overrides of models/default.yaml, one policy each; together they turn on every
#: reservation and fairness knob (and switch the defaults' booleans the other way).
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    "head-of-queue": {"reservations": {"head_of_queue": True, "after_hours": 4.0}},
    "relative-per-node": {
        "weights": {"node_exponent": 0.75},
        "reservations": {
            "after_hours": 6.0,
            "order_hours": 12.0,
            "priority_exponent": 1.5,
            "relative_after_hours": 0.5,
            "relative_factor": 2.0,
        },
    },
    "work-conserving-caps": {
        "fairness": {
            "owner_max_share": 0.3,
            "run_max_share": 0.25,
            "work_conserving": True,
            "peers_only": False,
        }
    },
    "flat-threshold-no-backfill": {
        "reservations": {
            "priority_scaled": False,
            "after_hours": 3.0,
            "max_jobs": 2,
            "backfill": False,
        },
        "aging": {"enabled": False},
    },
}


def _policy(overrides: dict[str, dict[str, Any]]) -> Policy:
    data = yaml.safe_load((REPO / "models" / "default.yaml").read_text(encoding="utf-8"))
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return policy_from_mapping(data)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_plan_validates_and_every_job_runs_once(variant: str) -> None:
    jobs = generate(BUSY)
    nodes = lab_nodes(str(FIXTURES / "labs" / "demo.yaml"))
    names: dict[str, list[str]] = {}
    for node in nodes:
        if node.up:
            names.setdefault(node.machine_type, []).append(node.name)
    scheduler = OptiallocScheduler(
        name=variant,
        policy=_policy(VARIANTS[variant]),
        nodes=nodes,
        jobs=jobs,
        origin=BUSY.origin,
    )
    result = simulate(jobs, scheduler, names, tick_s=300)
    assert scheduler.rejected == 0, scheduler.notes
    assert not scheduler.failed, scheduler.notes
    starts = [r for r in result.records if r.start is not None]
    assert len(starts) == len(jobs) == len({r.job.job_id for r in result.records})
    # the lab was busy enough for the starvation rules to matter
    assert max(r.start - r.job.submit for r in starts) > 4 * 3600  # type: ignore[operator]
