"""Jobs whose bodies were only scanned on entry: lazy bodies, full checks at claim and after."""

from __future__ import annotations

import json
import pickle
import sqlite3
import time
from pathlib import Path

import pytest
import yaml
from queue_support import body, marker_of, open_beanstalk, raw, raw_put

from optialloc.errors import JobParseError
from optialloc.queue import db as queue_db
from optialloc.queue import store as queue_store
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.queue.lazy import LazyBody
from optialloc.queue.validate import check_all
from optialloc.snapshots.compact import dump_compact

# Scheduling fields fine, but not YAML: `a: b: c` is refused by every YAML parser.
BROKEN = body("broken") + "extra:\n  a: b: c\n"


@pytest.fixture
def scan_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scan every insert, not only big ones."""
    monkeypatch.setattr(queue_store, "SCAN_AT", 1)


def unchecked_ids(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {r[0] for r in db.execute("SELECT job_id FROM jobs WHERE checked = 0")}


def test_scanned_job_has_its_full_body_and_is_checked_at_claim(
    tmp_path: Path, scan_everything: None
) -> None:
    queue = EmbeddedQueue(str(tmp_path / "q.sqlite"))
    text = body("lazy")
    job_id = queue.put("smithi", text, 100)
    assert unchecked_ids(tmp_path / "q.sqlite") == {job_id}
    [job] = queue.pending()
    assert isinstance(job.body, LazyBody)
    assert job.body == yaml.safe_load(text)
    assert marker_of(job.description) == "lazy"
    assert queue.claim(job_id)
    assert unchecked_ids(tmp_path / "q.sqlite") == set()
    assert [j.job_id for j in queue.claimed()] == [job_id]
    queue.close()


def test_body_that_is_not_yaml_is_buried_at_claim_never_dispatched(
    tmp_path: Path, scan_everything: None
) -> None:
    queue = EmbeddedQueue(str(tmp_path / "q.sqlite"))
    queue.validator.start_if_needed = lambda: None  # type: ignore[method-assign]  # claim only
    bad = queue.put("smithi", BROKEN, 100)
    good = queue.put("smithi", body("good"), 100)
    assert [j.job_id for j in queue.pending()] == [bad, good]  # listed before its full parse
    assert not queue.claim(bad)
    assert queue.claim(good)
    [buried] = queue.buried()
    assert buried.job_id == bad
    assert buried.reason.startswith("body: not valid YAML")
    assert buried.body == BROKEN  # kept as queued
    assert queue.pending() == ()
    queue.close()


def test_background_process_buries_bad_bodies_of_a_big_ingest(
    beanstalkd, tmp_path: Path, scan_everything: None
) -> None:
    for i in range(30):
        raw_put(beanstalkd.port, "smithi", body(f"j{i}"), priority=100)
    raw_put(beanstalkd.port, "smithi", BROKEN, priority=100)
    queue = open_beanstalk(tmp_path, beanstalkd.port)
    assert len(queue.pending()) == 31  # the first view comes from the scan
    assert queue.validator.wait(120), "the background check did not finish"
    for _ in range(100):  # its writes are visible to the next read
        if len(queue.pending()) == 30:
            break
        time.sleep(0.05)
    assert sorted(marker_of(j.description) for j in queue.pending()) == sorted(
        f"j{i}" for i in range(30)
    )
    [buried] = queue.buried()
    assert buried.reason.startswith("body: not valid YAML") and buried.body == BROKEN
    assert unchecked_ids(Path(queue.store.path)) == set()
    queue.close()


def test_a_scanner_mistake_would_be_corrected_by_the_full_parse(
    tmp_path: Path, scan_everything: None
) -> None:
    """If scanned fields ever disagreed with the body, the parsed ones win and no claim is made."""
    path = tmp_path / "q.sqlite"
    queue = EmbeddedQueue(str(path))
    queue.validator.start_if_needed = lambda: None  # type: ignore[method-assign]
    job_id = queue.put("smithi", body("wrong", priority=5), 100)
    with sqlite3.connect(path) as db:  # simulate a scanner bug: wrong machine type scanned
        fields = json.loads(db.execute("SELECT fields FROM jobs").fetchone()[0])
        fields["machine_type"] = "mira"
        db.execute(
            "UPDATE jobs SET fields = ?, updated_seq = updated_seq + 1000", [json.dumps(fields)]
        )
        db.execute("UPDATE meta SET value = value + 1000")
    [job] = queue.pending()
    assert job.machine_types == ("mira",)
    assert not queue.claim(job_id)  # the listed job was not the real one: not dispatched
    [job] = queue.pending()
    assert job.machine_types == ("smithi",)
    assert queue.claim(job_id)
    queue.close()


def test_lazy_body_behaves_as_the_parsed_dict(tmp_path: Path) -> None:
    text = body("dump")
    full = yaml.safe_load(text)
    lazy = LazyBody(text, {"machine_type": "smithi", "roles": [[]]})
    assert lazy == full and dict(lazy) == full and len(lazy) == len(full)
    lazy = LazyBody(text, {"machine_type": "smithi"})
    assert json.loads(json.dumps(lazy)) == json.loads(json.dumps(full))
    lazy = LazyBody(text, {"machine_type": "smithi"})
    assert yaml.safe_load(yaml.safe_dump(lazy)) == full
    lazy = LazyBody(text, {"machine_type": "smithi"})
    assert yaml.safe_load(dump_compact({"body": lazy})) == {"body": full}  # snapshot dumps
    assert pickle.loads(pickle.dumps(LazyBody(text, {"name": "x"}))) == full
    assert {**LazyBody(text, {"name": "x"})} == full
    with pytest.raises(JobParseError, match="not valid YAML"):
        LazyBody(BROKEN, {"name": "x"}).get("name")


def test_check_all_leaves_nothing_unchecked(tmp_path: Path, scan_everything: None) -> None:
    path = tmp_path / "q.sqlite"
    queue = EmbeddedQueue(str(path))
    queue.validator.start_if_needed = lambda: None  # type: ignore[method-assign]
    ids = [queue.put("smithi", body(f"c{i}"), 100) for i in range(5)]
    bad = queue.put("smithi", BROKEN, 100)
    assert unchecked_ids(path) == {*ids, bad}
    assert check_all(queue.store, batch=2) == 6
    assert unchecked_ids(path) == set()
    assert [b.job_id for b in queue.buried()] == [bad]
    queue.close()


def test_store_made_before_the_scan_columns_opens_and_works(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        schema = queue_db._SCHEMA.replace(
            ",\n    fields TEXT,\n    checked INTEGER NOT NULL DEFAULT 1", ""
        )
        assert "checked" not in schema
        db.executescript(schema)
    queue = EmbeddedQueue(str(path))
    job_id = queue.put("smithi", body("old"), 100)
    assert [j.job_id for j in queue.pending()] == [job_id]
    assert queue.claim(job_id)
    queue.close()


def test_big_ingest_in_batches_gives_the_jobs_the_full_parse_gives(
    beanstalkd, tmp_path: Path, scan_everything: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several batches, deletes overlapping the next batch, scanned bodies: the same jobs."""
    from optialloc.queue import beanstalk as beanstalk_queue
    from optialloc.teuthology import parse_job

    monkeypatch.setattr(beanstalk_queue, "BATCH", 20)
    texts = {}
    for i in range(70):
        text = body(f"h{i}", priority=i % 3, nodes=1 + i % 4)
        texts[str(raw_put(beanstalkd.port, "smithi", text, priority=100 + i % 3))] = text
    queue = open_beanstalk(tmp_path, beanstalkd.port)
    jobs = queue.pending()
    assert len(jobs) == 70
    for job in jobs:
        full = parse_job(
            yaml.safe_load(texts[job.job_id]),
            job_id=job.job_id,
            queued_at=job.queued_at,
            tube="smithi",
            priority=job.priority,
        )
        assert job == full and job.body == full.body
    stats = raw(beanstalkd.port).stats_tube("smithi")  # all deleted there, none still reserved
    assert (stats["current-jobs-ready"], stats["current-jobs-reserved"]) == (0, 0)
    assert queue.validator.wait(120)
    queue.close()
