"""Property test: random operations from two processes' adapters on one store match a simple model.

The incremental view (change stamps + in-memory cache) is the part most
likely to drift; a model of the queue as a dict checks it after every step.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule
from queue_support import body, marker_of

from optialloc.errors import NotFound
from optialloc.queue import view as queue_view
from optialloc.queue.embedded import EmbeddedQueue


class QueueModel(RuleBasedStateMachine):
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        path = str(Path(self.dir.name) / "queue.sqlite")
        self.adapters = [EmbeddedQueue(path), EmbeddedQueue(path)]
        self.state: dict[str, str] = {}  # job_id -> pending/claimed/buried/deleted
        self.priority: dict[str, int] = {}
        self.order: dict[str, int] = {}
        self.count = 0

    @rule(target=jobs, who=st.integers(0, 1), priority=st.integers(0, 3), bad=st.booleans())
    def put(self, who: int, priority: int, bad: bool) -> str:
        text = "- not a mapping\n" if bad else body(f"m{self.count}", priority=priority)
        job_id = self.adapters[who].put("smithi", text, priority)
        self.state[job_id] = "buried" if bad else "pending"
        self.priority[job_id] = priority
        self.order[job_id] = self.count
        self.count += 1
        return job_id

    @rule(job=jobs, who=st.integers(0, 1))
    def claim(self, job: str, who: int) -> None:
        assert self.adapters[who].claim(job) == (self.state[job] == "pending")
        if self.state[job] == "pending":
            self.state[job] = "claimed"

    @rule(job=jobs, who=st.integers(0, 1))
    def release(self, job: str, who: int) -> None:
        self.adapters[who].release(job)
        if self.state[job] == "claimed":
            self.state[job] = "pending"

    @rule(job=jobs, who=st.integers(0, 1))
    def bury(self, job: str, who: int) -> None:
        self.adapters[who].bury(job, "because")
        if self.state[job] != "deleted":
            self.state[job] = "buried"

    @rule(job=jobs, who=st.integers(0, 1))
    def delete(self, job: str, who: int) -> None:
        self.adapters[who].delete(job)
        self.state[job] = "deleted"

    @rule(job=jobs, who=st.integers(0, 1))
    def kick(self, job: str, who: int) -> None:
        kicked = self.adapters[who].kick([job])
        good = job in self.order and self.state[job] == "buried"
        # Only bodies that parse come back; the bad ones ("- not a mapping") stay buried.
        if kicked:
            assert good
            self.state[job] = "pending"

    @rule(job=jobs, who=st.integers(0, 1), priority=st.integers(0, 3))
    def set_priority(self, job: str, who: int, priority: int) -> None:
        if self.state[job] == "deleted":
            try:
                self.adapters[who].set_priority(job, priority)
            except NotFound:
                return
            raise AssertionError("priority of a deleted job changed")
        self.adapters[who].set_priority(job, priority)
        self.priority[job] = priority

    @rule(small=st.booleans())
    def switch_refresh_mode(self, small: bool) -> None:
        """Exercise both refresh paths: keys moved one by one, and one full re-sort."""
        queue_view.RESORT_AT = 1 if small else 2000

    @invariant()
    def views_match_the_model(self) -> None:
        expected = sorted(
            (j for j, s in self.state.items() if s == "pending"),
            key=lambda j: (self.priority[j], self.order[j]),
        )
        claimed = sorted(j for j, s in self.state.items() if s == "claimed")
        buried = sorted(j for j, s in self.state.items() if s == "buried")
        for adapter in self.adapters:
            pending = adapter.pending()
            assert [j.job_id for j in pending] == expected
            assert [j.priority for j in pending] == [self.priority[j] for j in expected]
            assert all(marker_of(j.description) for j in pending)
            assert sorted(j.job_id for j in adapter.claimed()) == claimed
            assert sorted(b.job_id for b in adapter.buried()) == buried

    def teardown(self) -> None:
        queue_view.RESORT_AT = 2000
        for adapter in self.adapters:
            adapter.close()
        self.dir.cleanup()


QueueModel.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestQueueModel = QueueModel.TestCase
