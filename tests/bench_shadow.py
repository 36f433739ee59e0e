"""Benchmark: the read-only listing's walk over beanstalkd's job ids (`optialloc.queue.shadow`).

A fresh beanstalkd on a free loopback port gets `--ids` jobs put, all but the
last `--live` deleted again (what a long-lived beanstalkd looks like after
teuthology's dispatchers ran most of its jobs). Prints how long the first walk
takes (from id 1) and the next one (from the lowest live id it remembered).

    nice -n 10 python3 tests/bench_shadow.py
    nice -n 10 python3 tests/bench_shadow.py --ids 1000000 --live 500

Not a pytest test (no timed assertions); figures for docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import free_port

from optialloc.queue.shadow import BeanstalkShadow

BODY = b"name: r\nowner: o\nmachine_type: smithi\nroles: [[a]]\npriority: 5\n"
CHUNK = 5000


def fill(port: int, ids: int, live: int) -> None:
    """Put `ids` jobs into tube smithi and delete all but the last `live` (pipelined)."""
    sock = socket.create_connection(("127.0.0.1", port))
    answers = sock.makefile("rb")
    sock.sendall(b"use smithi\r\n")
    answers.readline()
    for start in range(0, ids, CHUNK):
        count = min(CHUNK, ids - start)
        put = b"put 5 0 100 %d\r\n%s\r\n" % (len(BODY), BODY)
        sock.sendall(put * count)
        for _ in range(count):
            answers.readline()
    for start in range(1, ids - live + 1, CHUNK):
        chunk = range(start, min(start + CHUNK, ids - live + 1))
        sock.sendall(b"".join(b"delete %d\r\n" % jid for jid in chunk))
        for _ in chunk:
            answers.readline()
    sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=200_000)
    parser.add_argument("--live", type=int, default=10)
    args = parser.parse_args()
    binary = shutil.which("beanstalkd")
    if binary is None:
        sys.exit("beanstalkd is not installed")
    port = free_port()
    server = subprocess.Popen([binary, "-l", "127.0.0.1", "-p", str(port)])
    tmp = tempfile.mkdtemp()
    try:
        time.sleep(0.3)
        fill(port, args.ids, args.live)
        store = os.path.join(tmp, "queue.sqlite")
        for label in ("first walk (from id 1)", "next walk (from the remembered id)"):
            queue = BeanstalkShadow(store, "127.0.0.1", port, ["smithi"])
            began = time.perf_counter()
            found = queue.walk()
            elapsed = time.perf_counter() - began
            queue.close()
            rate = f" ({args.ids / elapsed:,.0f} ids/s)" if label.startswith("first") else ""
            print(
                f"{label}: {len(found)} ready job(s) found among {args.ids} ids in "
                f"{elapsed:.3f} s{rate}"
            )
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
