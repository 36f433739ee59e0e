"""Decayed usage per owner (pure arithmetic): halving, running jobs, rebuild from history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from optialloc.dispatch.usage import HALF_LIFE_S, UsageMeter
from optialloc.domain import Job, RunningJob

T0 = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


def test_usage_halves_every_half_life_and_adds_up() -> None:
    meter = UsageMeter()
    meter.add("alice", 1000.0, T0)
    meter.add("bob", 10.0, T0)
    later = T0 + timedelta(seconds=HALF_LIFE_S)
    assert meter.at(later) == pytest.approx({"alice": 500.0, "bob": 5.0})
    meter.add("alice", 100.0, later)
    assert meter.at(later + timedelta(seconds=HALF_LIFE_S))["alice"] == pytest.approx(300.0)


def test_running_jobs_count_for_the_time_they_have_run() -> None:
    job = Job("1", "r", "carol", 100, ("smithi",), 2, T0)
    running = [RunningJob(job, ("n1", "n2"), T0)]
    assert UsageMeter().at(T0 + timedelta(seconds=30), running) == {"carol": 60.0}


def test_history_rebuild_matches_live_accounting_whatever_the_order() -> None:
    history = [("a", 2, T0, T0 + timedelta(hours=1)), ("b", 1, T0, T0 + timedelta(hours=3))]
    live = UsageMeter()
    for owner, nodes, start, end in history:
        live.add(owner, nodes * (end - start).total_seconds(), end)
    rebuilt = UsageMeter()
    rebuilt.load(reversed(history))
    now = T0 + timedelta(hours=5)
    assert rebuilt.at(now) == pytest.approx(live.at(now))
