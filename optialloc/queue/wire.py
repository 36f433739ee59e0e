"""Pipelined beanstalkd protocol for moving many jobs at once (reserve, stats-job, delete).

beanstalkc3 sends one command and waits for its answer; moving 20,000 jobs
that way costs 60,000 round trips. This client writes a batch of commands
and then reads the batch of answers on one socket, which beanstalkd allows.
It is used only by the ingest of `beanstalk_queue`; everything else goes
through beanstalkc3. Reservations belong to this socket: closing it (or the
process dying) returns every job it reserved to the ready queue.

Network failures raise `OSError` (including `ConnectionError` on EOF); an
unexpected answer raises `WireError`.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Any

# The fields of a `stats-job` answer the ingest needs, in the order beanstalkd writes them.
_STATS = re.compile(
    rb"\ntube: ([^\n]*)\n(?:.*\n)*?pri: (\d+)\n(?:.*\n)*?age: (\d+)\n(?:.*\n)*?ttr: (\d+)\n"
)


class WireError(Exception):
    """beanstalkd answered something this client does not expect."""


@dataclass(frozen=True)
class Reserved:
    """A job reserved on this connection."""

    jid: int
    body: bytes


@dataclass(frozen=True)
class JobInfo:
    """The parts of `stats-job` the ingest needs."""

    tube: str
    priority: int
    age_s: int
    ttr: int


class Wire:
    """One raw beanstalkd connection with pipelined batches."""

    def __init__(self, host: str, port: int, timeout_s: float = 10.0) -> None:
        self._sock = socket.create_connection((host, port), timeout=timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file: Any = self._sock.makefile("rb", buffering=1 << 16)
        self.watching: set[str] = {"default"}

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._sock.close()

    def _line(self) -> bytes:
        line = self._file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("beanstalkd closed the connection")
        return line[:-2]

    def _data(self, size: int) -> bytes:
        data = self._file.read(size + 2)
        if len(data) != size + 2:
            raise ConnectionError("beanstalkd closed the connection mid-answer")
        return data[:-2]

    def _send(self, commands: list[bytes]) -> None:
        self._sock.sendall(b"".join(commands))

    def watch_only(self, tubes: set[str]) -> None:
        """Watch exactly `tubes` (beanstalkd cannot ignore its last watched tube: watch first)."""
        add = sorted(tubes - self.watching)
        drop = sorted(self.watching - tubes)
        commands = [b"watch %s\r\n" % t.encode() for t in add] + [
            b"ignore %s\r\n" % t.encode() for t in drop
        ]
        self._send(commands)
        for command in commands:
            answer = self._line()
            if not answer.startswith(b"WATCHING"):
                raise WireError(f"{command.strip().decode()}: {answer.decode(errors='replace')}")
        self.watching = set(tubes)

    def reserve_batch(self, limit: int) -> list[Reserved]:
        """Reserve up to `limit` ready jobs of the watched tubes, most urgent first, no waiting."""
        self._send([b"reserve-with-timeout 0\r\n"] * limit)
        jobs: list[Reserved] = []
        for _ in range(limit):
            answer = self._line()
            if answer.startswith(b"RESERVED "):
                _, jid, size = answer.split()
                jobs.append(Reserved(int(jid), self._data(int(size))))
            elif answer not in (b"TIMED_OUT", b"DEADLINE_SOON"):
                raise WireError(f"reserve-with-timeout: {answer.decode(errors='replace')}")
        return jobs

    def stats_jobs(self, jids: list[int]) -> dict[int, JobInfo]:
        """`stats-job` for each id; ids beanstalkd no longer knows are left out."""
        self._send([b"stats-job %d\r\n" % jid for jid in jids])
        infos: dict[int, JobInfo] = {}
        for jid in jids:
            answer = self._line()
            if answer == b"NOT_FOUND":
                continue
            if not answer.startswith(b"OK "):
                raise WireError(f"stats-job {jid}: {answer.decode(errors='replace')}")
            data = self._data(int(answer.split()[1]))
            found = _STATS.search(data)
            if found is None:
                raise WireError(f"stats-job {jid}: no tube/pri/age/ttr in {data[:200]!r}")
            tube, pri, age, ttr = found.groups()
            name = tube.decode().strip().strip("'\"")
            infos[jid] = JobInfo(tube=name, priority=int(pri), age_s=int(age), ttr=int(ttr))
        return infos

    def delete_many(self, jids: list[int]) -> None:
        """Delete jobs reserved here; ids already gone are fine."""
        self.send_deletes(jids)
        self.read_deletes(jids)

    def send_deletes(self, jids: list[int]) -> None:
        """Send the deletes only: beanstalkd works on them while this process does other work.

        The next thing read from this connection must be `read_deletes(jids)`.
        """
        self._send([b"delete %d\r\n" % jid for jid in jids])

    def read_deletes(self, jids: list[int]) -> None:
        """The answers to `send_deletes(jids)`; ids already gone are fine."""
        for jid in jids:
            answer = self._line()
            if answer not in (b"DELETED", b"NOT_FOUND"):
                raise WireError(f"delete {jid}: {answer.decode(errors='replace')}")


# -- read-only: peeking by id (the shadow listing; see `optialloc.queue.shadow`) -------------

# `stats-job` fields a read-only listing needs: tube, state, pri, age.
_PEEK_STATS = re.compile(rb"\ntube: ([^\n]*)\nstate: ([^\n]*)\npri: (\d+)\nage: (\d+)\n")


@dataclass(frozen=True)
class Peeked:
    """A job seen with `peek` (not reserved: nothing about it changed in beanstalkd)."""

    jid: int
    tube: str
    state: str  # ready, reserved, delayed, buried
    priority: int
    age_s: int
    body: bytes


def peek_many(wire: Wire, jids: list[int]) -> dict[int, Peeked]:
    """`peek` and `stats-job` for each id, pipelined; ids beanstalkd does not know are left out.

    Neither command changes a job or any per-job or per-tube counter of
    beanstalkd (only the server-wide `cmd-peek`/`cmd-stats-job` counts).
    """
    if not jids:
        return {}
    wire._send([b"peek %d\r\n" % jid for jid in jids])
    bodies: dict[int, bytes] = {}
    for jid in jids:
        answer = wire._line()
        if answer == b"NOT_FOUND":
            continue
        if not answer.startswith(b"FOUND "):
            raise WireError(f"peek {jid}: {answer.decode(errors='replace')}")
        bodies[jid] = wire._data(int(answer.split()[2]))
    found = sorted(bodies)
    wire._send([b"stats-job %d\r\n" % jid for jid in found])
    out: dict[int, Peeked] = {}
    for jid in found:
        answer = wire._line()
        if answer == b"NOT_FOUND":  # deleted between the two commands
            continue
        if not answer.startswith(b"OK "):
            raise WireError(f"stats-job {jid}: {answer.decode(errors='replace')}")
        data = wire._data(int(answer.split()[1]))
        match = _PEEK_STATS.search(data)
        if match is None:
            raise WireError(f"stats-job {jid}: no tube/state/pri/age in {data[:200]!r}")
        tube, state, pri, age = match.groups()
        out[jid] = Peeked(
            jid=jid,
            tube=tube.decode().strip().strip("'\""),
            state=state.decode().strip(),
            priority=int(pri),
            age_s=int(age),
            body=bodies[jid],
        )
    return out
