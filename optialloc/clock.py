"""The real clock for `serve`: the `Clock` port over the system's UTC time.

The dispatcher and the monitor read time only through a `Clock`, so the
what-if simulator can drive the very same code with a simulated one.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


class RealClock:
    """`now()` is the system's wall clock in UTC; `sleep` really sleeps."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)
