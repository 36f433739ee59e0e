"""Progress for long commands: a tqdm bar on a terminal, a plain line every 10 s otherwise.

A bar's redraws are carriage-return frames: fine on a terminal, kilobytes of
noise in a piped log. So `progress_bar` gives tqdm only when the stream is a
terminal (`disable=not isatty`), and otherwise a `LineProgress` that writes
one ordinary line at most every `LINE_INTERVAL_S` seconds (nothing at all for
work shorter than that). Both offer `update`, `set_postfix_str`,
`set_postfix` and `close`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

#: At most one progress line this often when the output is not a terminal (seconds).
LINE_INTERVAL_S = 10.0


class LineProgress:
    """tqdm's small interface, printing `desc: n/total unit (postfix)` every interval."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str,
        file: TextIO,
        *,
        interval_s: float = LINE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
        self.n = 0
        self.postfix = ""
        self.interval_s = interval_s
        self.clock = clock
        self.started = clock()
        self.last = self.started

    def update(self, n: int = 1) -> None:
        self.n += n
        self._maybe_print()

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text
        self._maybe_print()

    def set_postfix(self, **values: Any) -> None:
        self.set_postfix_str(", ".join(f"{k}={v}" for k, v in values.items()))

    def _maybe_print(self) -> None:
        now = self.clock()
        if now - self.last < self.interval_s:
            return
        self.last = now
        extra = f" ({self.postfix})" if self.postfix else ""
        line = (
            f"{self.desc}: {self.n}/{self.total} {self.unit}s{extra}, {now - self.started:.0f} s"
        )
        print(line, file=self.file, flush=True)

    def close(self) -> None:
        """Nothing to clear: every line written is a finished line."""


def progress_bar(
    total: int, desc: str, unit: str, *, file: TextIO | None = None, leave: bool = True
) -> Any:
    """A tqdm bar when `file` (default stderr) is a terminal, else a `LineProgress`."""
    stream = file if file is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=stream, leave=leave, disable=False)
    return LineProgress(total, desc, unit, stream)
