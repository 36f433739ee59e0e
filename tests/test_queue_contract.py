"""The `JobQueue` contract, run against both adapters (embedded SQLite, real beanstalkd)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from queue_support import body, marker_of, open_beanstalk, open_embedded

from optialloc.errors import InputError, NotFound
from optialloc.ports import JobQueue

Opener = Callable[[], JobQueue]


@pytest.fixture(params=["embedded", "beanstalk"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens a new adapter on the same queue each call (like another process would)."""
    opened: list[JobQueue] = []
    if request.param == "beanstalk":
        port = request.getfixturevalue("beanstalkd").port

        def make() -> JobQueue:
            opened.append(open_beanstalk(tmp_path, port))
            return opened[-1]
    else:

        def make() -> JobQueue:
            opened.append(open_embedded(tmp_path))
            return opened[-1]

    yield make
    for q in opened:
        q.close()


@pytest.fixture
def queue(opener: Opener) -> JobQueue:
    return opener()


def markers(jobs) -> list[str]:
    return [marker_of(j.description) for j in jobs]


def test_is_a_jobqueue(queue: JobQueue) -> None:
    assert isinstance(queue, JobQueue)


def test_put_then_pending_parses_fields(queue: JobQueue) -> None:
    text = body("a", priority=40, nodes=3, run="run-x", owner="scheduled_bob@lab")
    job_id = queue.put("smithi", text, 40)
    [job] = queue.pending()
    assert job.job_id == job_id
    assert (job.tube, job.priority, job.nodes_needed) == ("smithi", 40, 3)
    assert (job.run, job.owner, job.machine_types) == ("run-x", "scheduled_bob@lab", ("smithi",))
    assert dict(job.body) == yaml.safe_load(text)
    assert job.queued_at.tzinfo is not None
    assert queue.get(job_id) == job


def test_pending_is_priority_then_submission_order_across_tubes(queue: JobQueue) -> None:
    queue.put("smithi", body("late-urgent", priority=10), 10)
    queue.put("mira", body("m1", priority=500, machine_type="mira"), 500)
    queue.put("smithi", body("s1", priority=500), 500)
    queue.put("multi", body("x1", priority=5, machine_type="smithi,mira"), 5)
    queue.put("mira", body("m2", priority=500, machine_type="mira"), 500)
    assert markers(queue.pending()) == ["x1", "late-urgent", "m1", "s1", "m2"]


def test_listing_hides_nothing_and_keeps_order(opener: Opener) -> None:
    first = opener()
    for i in range(20):
        first.put("smithi", body(f"j{i}", priority=100 - i % 3), 100 - i % 3)
    view1 = markers(first.pending())
    # A second reader (another process) sees the same jobs in the same order, twice.
    second = opener()
    assert markers(second.pending()) == view1
    assert markers(first.pending()) == view1
    assert len(view1) == 20


def test_claim_is_atomic_and_exclusive(opener: Opener) -> None:
    a, b = opener(), opener()
    job_id = a.put("smithi", body("c"), 100)
    a.pending()
    assert a.claim(job_id) is True
    assert b.claim(job_id) is False
    assert a.claim(job_id) is False
    assert a.pending() == () or list(a.pending()) == []
    assert [j.job_id for j in b.claimed()] == [job_id]


def test_claim_of_unknown_buried_or_deleted_job_is_false(queue: JobQueue) -> None:
    buried = queue.put("smithi", body("b"), 100)
    deleted = queue.put("smithi", body("d"), 100)
    queue.pending()
    queue.bury(buried, "testing")
    queue.delete(deleted)
    assert queue.claim("999999") is False
    assert queue.claim(buried) is False
    assert queue.claim(deleted) is False


def test_claimed_job_survives_its_claimer(opener: Opener) -> None:
    first = opener()
    job_id = first.put("smithi", body("survivor"), 100)
    first.pending()
    assert first.claim(job_id)
    first.close()
    later = opener()
    assert [j.job_id for j in later.claimed()] == [job_id]
    assert list(later.pending()) == []


def test_release_restores_original_order(queue: JobQueue) -> None:
    ids = [queue.put("smithi", body(f"r{i}"), 100) for i in range(3)]
    queue.pending()
    assert queue.claim(ids[0])
    assert markers(queue.pending()) == ["r1", "r2"]
    queue.release(ids[0])
    queue.release(ids[0])  # idempotent
    assert markers(queue.pending()) == ["r0", "r1", "r2"]


def test_bury_kick_and_delete(queue: JobQueue) -> None:
    job_id = queue.put("smithi", body("k"), 100)
    queue.pending()
    queue.bury(job_id, "launch failed: no such command")
    queue.bury(job_id, "launch failed: no such command")  # idempotent
    assert list(queue.pending()) == []
    [buried] = queue.buried()
    assert (buried.job_id, buried.reason) == (job_id, "launch failed: no such command")
    assert "marker=k" in buried.body
    assert queue.kick([job_id]) == [job_id]
    assert markers(queue.pending()) == ["k"]
    queue.delete(job_id)
    queue.delete(job_id)  # idempotent
    assert list(queue.pending()) == [] and list(queue.buried()) == []
    assert queue.get(job_id) is None


def test_unknown_job_ids_raise_not_found(queue: JobQueue) -> None:
    for action in (
        queue.release,
        queue.delete,
        lambda j: queue.bury(j, "x"),
        lambda j: queue.set_priority(j, 5),
        lambda j: queue.kick([j]),
    ):
        with pytest.raises(NotFound):
            action("424242")


def test_set_priority_reorders_and_wins_over_body(opener: Opener) -> None:
    queue = opener()
    a = queue.put("smithi", body("a", priority=100), 100)
    queue.put("smithi", body("b", priority=100), 100)
    queue.pending()
    queue.set_priority(a, 900)
    assert markers(queue.pending()) == ["b", "a"]
    assert opener().get(a).priority == 900  # type: ignore[union-attr]
    with pytest.raises(InputError, match="priority"):
        queue.set_priority(a, -1)


def test_pause_resume_and_stats(queue: JobQueue) -> None:
    queue.put("smithi", body("s"), 100)
    queue.put("mira", body("m", machine_type="mira"), 100)
    queue.pending()
    queue.pause("smithi", 600)
    assert "smithi" in queue.paused_tubes()
    stats = {s.tube: s for s in queue.stats()}
    assert stats["smithi"].paused and 0 < stats["smithi"].pause_seconds_left <= 600
    assert (stats["mira"].ready, stats["mira"].paused) == (1, False)
    queue.resume("smithi")
    assert "smithi" not in queue.paused_tubes()
    with pytest.raises(InputError, match="seconds"):
        queue.pause("smithi", 0)


def test_stats_count_each_state(queue: JobQueue) -> None:
    ids = [queue.put("smithi", body(f"s{i}"), 100) for i in range(4)]
    queue.pending()
    queue.claim(ids[0])
    queue.bury(ids[1], "why not")
    queue.delete(ids[2])
    [smithi] = [s for s in queue.stats() if s.tube == "smithi"]
    assert (smithi.ready, smithi.claimed, smithi.buried) == (1, 1, 1)


MALFORMED = {
    "not yaml": "{name: [unclosed",
    "not a mapping": "- just\n- a list\n",
    "bad priority": body("p").replace("priority: 1000", "priority: urgent"),
    "bad roles": body("r").replace("roles:\n- - osd.0\n", "roles: osd.0\n"),
    "no machine type in multi": "name: x\nroles: [[a]]\n",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_body_is_buried_with_reason_and_others_served(queue: JobQueue, kind: str) -> None:
    queue.put("smithi", body("before"), 100)
    tube = "multi" if kind == "no machine type in multi" else "smithi"
    bad = queue.put(tube, MALFORMED[kind], 1)
    queue.put("smithi", body("after"), 100)
    assert markers(queue.pending()) == ["before", "after"]
    [buried] = queue.buried()
    assert buried.job_id == bad
    assert buried.body == MALFORMED[kind]
    field = {
        "bad priority": "priority",
        "bad roles": "roles",
        "no machine type in multi": "machine_type",
    }
    assert buried.reason.startswith(field.get(kind, "body") + ":"), buried.reason
    # Kicking it does not let it into the queue: it still does not parse.
    assert queue.kick([bad]) == []
    assert [b.job_id for b in queue.buried()] == [bad]


def test_huge_body_is_never_lost(queue: JobQueue, request: pytest.FixtureRequest) -> None:
    huge = body("huge") + "padding: " + "x" * (2 * 1024 * 1024) + "\n"
    if "beanstalk" in request.node.name:
        # beanstalkd itself refuses bodies over its -z limit: the put fails loudly instead.
        with pytest.raises(InputError, match="max job size"):
            queue.put("smithi", huge, 100)
    else:
        job_id = queue.put("smithi", huge, 100)
        [buried] = queue.buried()
        assert buried.job_id == job_id and "over the" in buried.reason
    queue.put("smithi", body("next"), 100)
    assert markers(queue.pending()) == ["next"]


def test_incremental_view_follows_other_writers(opener: Opener) -> None:
    reader, writer = opener(), opener()
    ids = [writer.put("smithi", body(f"v{i}"), 100) for i in range(5)]
    assert len(reader.pending()) == 5
    writer.pending()
    writer.claim(ids[0])
    writer.bury(ids[1], "x")
    writer.delete(ids[2])
    writer.set_priority(ids[4], 1)
    writer.put("smithi", body("v5"), 50)
    assert markers(reader.pending()) == ["v4", "v5", "v3"]
    assert [j.job_id for j in reader.claimed()] == [ids[0]]
