"""Issue 16: one bad body never stops the others (ingest, CLI verbs, policy arithmetic).

Each case was reproduced against a real beanstalkd with raw puts; each test
here failed before its fix (see docs/reliability.md, "One bad job").
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from queue_support import body, raw_put
from solver_support import job, nodes, snapshot, solve_checked
from test_cli_queue import make_runner

from optialloc.errors import ExitCode
from optialloc.policy import default_policy
from optialloc.queue.db import NewJob
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.queue.store import SCAN_AT
from optialloc.ranking import MAX_WAIT_S, reservation_order_s, reservation_threshold_s
from optialloc.teuthology import MAX_PRIORITY
from optialloc.yaml_bounds import MAX_DEPTH, MAX_NODES

SURROGATE_NAME = 'name: "run-\\ud800-x"\nowner: me\nmachine_type: smithi\nroles: [[a]]\n'
SURROGATE_OWNER = 'name: run-x\nowner: "me\\udfff"\nmachine_type: smithi\nroles: [[a]]\n'
BIG_PRIORITY = "name: run-x\nmachine_type: smithi\nroles: [[a]]\npriority: 12846523\n"


def bomb(levels: int) -> str:
    """A valid job whose `tasks` expand to 10**levels leaves through aliases."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return (
        "\n".join(lines)
        + f"\nname: bomb\nmachine_type: smithi\nroles: [[a]]\ntasks: *a{levels - 1}\n"
    )


def deep(levels: int) -> str:
    return (
        "name: deep\nmachine_type: smithi\nroles: [[a]]\ntasks: "
        + "[" * levels
        + "]" * levels
        + "\n"
    )


BAD_BODIES = {
    "surrogate name": (SURROGATE_NAME, "name"),
    "surrogate owner": (SURROGATE_OWNER, "owner"),
    "priority": (BIG_PRIORITY, f"0..{MAX_PRIORITY}"),
    "alias bomb": (bomb(6), f"{MAX_NODES} nodes"),
    "recursive alias": ("name: r\nmachine_type: smithi\nroles: [[a]]\nx: &x [*x]\n", "recursive"),
    "deep nesting": (deep(MAX_DEPTH + 5), f"{MAX_DEPTH} levels"),
}


def new_job(text: str, priority: int = 100) -> NewJob:
    return NewJob(tube="smithi", body=text, priority=priority, ttr=60, queued_at=time.time())


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
@pytest.mark.parametrize("batch", [3, SCAN_AT + 2], ids=["parsed", "scanned"])
def test_a_bad_body_is_buried_and_its_batch_goes_on(tmp_path: Path, case: str, batch: int) -> None:
    text, why = BAD_BODIES[case]
    queue = EmbeddedQueue(str(tmp_path / "q.sqlite"))
    try:
        good = [new_job(body(f"good{i}")) for i in range(batch - 1)]
        ids = queue.store.insert([good[0], new_job(text), *good[1:]])
        queue.store.check_rows(queue.store.unchecked(10_000))  # what the background check does
        buried = {b.job_id: b.reason for b in queue.buried()}
        assert list(buried) == [ids[1]]
        assert why in buried[ids[1]], buried
        assert sorted(j.job_id for j in queue.pending()) == sorted(ids[:1] + ids[2:])
        row = queue.store.row(ids[1])
        assert row is not None and len(row.body_json or "") < 10_000  # nothing expanded
    finally:
        queue.close()


def test_deep_nesting_never_reaches_libyaml(tmp_path: Path) -> None:
    # 100,000 levels overflow libyaml's recursive composer: a segfault, not an exception.
    queue = EmbeddedQueue(str(tmp_path / "q.sqlite"))
    try:
        job_id = queue.put("smithi", deep(100_000), 100)
        (buried,) = queue.buried()
        assert buried.job_id == job_id and f"{MAX_DEPTH} levels" in buried.reason
    finally:
        queue.close()


def test_queue_priority_outside_the_range_is_buried_with_the_range(tmp_path: Path) -> None:
    queue = EmbeddedQueue(str(tmp_path / "q.sqlite"))
    try:
        ids = queue.store.insert([new_job(body("a"), 2**32 - 1), new_job(body("b"), 5)])
        (buried,) = queue.buried()
        assert buried.job_id == ids[0] and f"0..{MAX_PRIORITY}" in buried.reason
        assert [j.job_id for j in queue.pending()] == [ids[1]]
        with pytest.raises(Exception, match=f"0..{MAX_PRIORITY}"):
            queue.set_priority(ids[1], 12_846_523)
    finally:
        queue.close()


def test_lone_surrogates_in_the_text_itself_are_stored_escaped_and_buried(tmp_path: Path) -> None:
    queue = EmbeddedQueue(str(tmp_path / "q.sqlite"))
    try:
        ids = queue.store.insert([new_job("name: a\ud800b\nroles: [[a]]\n"), new_job(body("ok"))])
        (buried,) = queue.buried()
        assert buried.job_id == ids[0] and "surrogate" in buried.reason
        assert [j.job_id for j in queue.pending()] == [ids[1]]
    finally:
        queue.close()


@pytest.mark.parametrize("p", [0, 1000, MAX_PRIORITY, 12_846_523, 2**31, 2**32 - 1])
def test_policy_arithmetic_is_safe_over_beanstalkds_whole_range(p: int) -> None:
    policy = default_policy()
    when = datetime(2026, 12, 1, tzinfo=UTC)
    for seconds in (reservation_threshold_s(p, policy), reservation_order_s(p, policy)):
        assert 0 < seconds <= MAX_WAIT_S
        assert when + timedelta(seconds=seconds) > when


def test_solver_and_validator_take_a_job_of_the_largest_beanstalk_priority() -> None:
    # The validator raised OverflowError on every tick for such a job (issue 16, case 2).
    queue = [
        job("big", priority=2**32 - 1, waited_h=500.0),
        job("small", priority=100, waited_h=1.0),
        job("wide", nodes_needed=3, priority=4_000_000_000, waited_h=900.0),
    ]
    plan = solve_checked(snapshot(nodes("smithi", 2), queue), default_policy())
    assert "small" in {s.job_id for s in plan.starts}


@pytest.fixture
def bean_cli(beanstalkd, tmp_path: Path):  # type: ignore[no-untyped-def]
    config = tmp_path / "c.yaml"
    values = dict(queue_backend="beanstalk", queue_port=beanstalkd.port, state_dir=str(tmp_path))
    config.write_text(yaml.safe_dump(values))
    return make_runner(config)


def test_every_cli_verb_works_whatever_is_in_the_queue(beanstalkd, bean_cli) -> None:  # type: ignore[no-untyped-def]
    port = beanstalkd.port
    good = [raw_put(port, "smithi", body(f"good{i}"), priority=100) for i in range(3)]
    bad = {
        name: raw_put(port, "smithi", text, priority=50) for name, (text, _) in BAD_BODIES.items()
    }
    bad["pri"] = raw_put(port, "smithi", body("huge"), priority=2**32 - 1)
    bad["bomb8"] = raw_put(port, "smithi", bomb(8), priority=70)  # 10**8 leaves, ~500 bytes
    bad["nul"] = raw_put(port, "smithi", 'name: "a\\0b\\x1b[31m"\nroles: [[a]]\n', priority=60)
    listed = json.loads(bean_cli("queue", "list", "--json").stdout)
    pending = {str(r["job_id"]) for r in listed}
    assert {str(g) for g in good} <= pending
    buried = {
        b["job_id"]: b["reason"] for b in json.loads(bean_cli("queue", "buried", "--json").stdout)
    }
    for name, (_, why) in BAD_BODIES.items():
        assert why in buried[str(bad[name])], (name, buried)
    assert f"0..{MAX_PRIORITY}" in buried[str(bad["pri"])]
    assert f"{MAX_NODES} nodes" in buried[str(bad["bomb8"])]
    assert "buried" in bean_cli("queue", "buried").stdout
    bean_cli("queue", "list")
    result = bean_cli("queue", "kick", str(bad["surrogate name"]), expect=ExitCode.BAD_INPUT)
    assert "stays buried" in result.stderr
    bean_cli("queue", "delete", str(bad["surrogate name"]))
    bean_cli("queue", "delete", str(bad["alias bomb"]))
    left = {b["job_id"] for b in json.loads(bean_cli("queue", "buried", "--json").stdout)}
    assert str(bad["surrogate name"]) not in left and str(bad["priority"]) in left


def test_schedule_refuses_a_priority_outside_the_range(bean_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    job_file = tmp_path / "job.yaml"
    job_file.write_text("roles: [[osd.0]]\ntasks: [{install: null}]\n")
    result = bean_cli(
        "schedule", str(job_file), "--name", "r", "--machine-type", "smithi",
        "--priority", "12846523", "--force", expect=ExitCode.BAD_INPUT,
    )  # fmt: skip
    assert f"0..{MAX_PRIORITY}" in result.stderr and "priority" in result.stderr
