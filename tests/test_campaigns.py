"""Short runs of the reliability campaigns (scripts/campaign_*.py): zero losses, both backends.

The long runs and their figures are in docs/reliability.md; these are the
same code with small numbers, so a regression shows up in the test command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import campaign_crash
import campaign_faults
import campaign_hostile
import campaign_load

pytestmark = [pytest.mark.slow, pytest.mark.beanstalkd]


@pytest.mark.parametrize("backend", ["embedded", "beanstalk"])
def test_hostile_input_campaign_loses_nothing(backend: str) -> None:
    assert campaign_hostile.run(60, 10, 10, [backend], seed=1, max_rss=600.0) == 0


def test_crash_campaign_on_beanstalkd_loses_nothing() -> None:
    # the embedded backend's crash points are tests/test_serve_crash.py
    assert campaign_crash.run(1, 4, 1, ["beanstalk"], seed=2) == 0


def test_fault_campaign_loses_nothing() -> None:
    # state-dir (a tmpfs filled up) needs root and a mount: it runs in the script only
    only = ["beanstalkd", "lock-server", "runner", "clock"]
    assert campaign_faults.run(4.0, 2, only, seed=3) == 0


def test_load_campaign_small_backlog_keeps_memory_flat() -> None:
    assert campaign_load.run(3000, 300, 6, 10.0, 10.0, seed=4) == 0
