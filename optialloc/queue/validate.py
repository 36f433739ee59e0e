"""Full parsing of scanned job bodies, in a background process.

A big ingest stores bodies that were only scanned (`queue_scan`): their
scheduling fields are known, the rest of the text is not yet known to be
valid YAML. A claim parses such a body first (see `QueueStore.claim`), so no
job is ever dispatched unparsed; this module parses them all soon after they
arrive, in another process so that the tick that took them in is not slowed
down, and buries the bad ones with their reason.

`BackgroundValidator.start_if_needed()` starts `python -m
optialloc.queue.validate STORE` when the store has unchecked rows
and no such process of this adapter is running. If the process dies, the
rows stay unchecked: the next start, or the claims, parse them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence

import optialloc
from optialloc.queue.store import QueueStore

log = logging.getLogger(__name__)

#: Rows parsed and recorded per transaction.
BATCH = 500


def check_all(store: QueueStore, batch: int = BATCH) -> int:
    """Parse every unchecked pending row of `store` fully; returns how many were checked."""
    done = 0
    while True:
        rows = store.unchecked(batch)
        if not rows:
            return done
        store.check_rows(rows)
        done += len(rows)


class BackgroundValidator:
    """Runs `check_all` on one store in a child process, at most one at a time."""

    def __init__(self, store: QueueStore) -> None:
        self._store = store
        self._child: subprocess.Popen[bytes] | None = None
        self._wanted = store.has_unchecked()  # left over by a process that stopped early

    def start_if_needed(self) -> None:
        """Start the child if rows were only scanned since the last start (cheap otherwise)."""
        wanted = self._wanted or self._store.take_unchecked_flag()
        if not wanted:
            return
        if self._child is not None and self._child.poll() is None:
            self._wanted = True  # the running child may have missed rows: run again later
            return
        self._wanted = False
        root = os.path.dirname(os.path.dirname(os.path.abspath(optialloc.__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "optialloc.queue.validate", self._store.path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        except OSError as exc:  # no process to spare: claims still parse each body first
            log.warning(
                "cannot start the background body check (%s): bodies are checked at claim", exc
            )

    def running(self) -> bool:
        return self._child is not None and self._child.poll() is None

    def wait(self, timeout_s: float) -> bool:
        """Wait for the running child (tests, benchmarks); True if none is running any more."""
        if self._child is None:
            return True
        try:
            self._child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def close(self) -> None:
        """Forget the child without waiting: it finishes its work on its own."""
        if self._child is not None:
            self._child.poll()  # reap it if it is done
        self._child = None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m optialloc.queue.validate STORE.sqlite", file=sys.stderr)
        return 3
    store = QueueStore(args[0])
    try:
        check_all(store)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
