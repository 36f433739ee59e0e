"""The embedded inventory: the lab's nodes and their locks in one SQLite file.

Implements `optialloc.ports.Inventory` for labs without paddles. Several
processes (the dispatcher, `optialloc nodes ...`) may use the same file at
once: every change runs in a `BEGIN IMMEDIATE` transaction, which takes
SQLite's write lock before reading, so "check the nodes are free, then lock
them" is atomic across processes and no node is ever held by two jobs.
The file is in WAL mode with `synchronous=NORMAL`: a committed lock survives
a crash of any process (not necessarily a power cut of the machine).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from optialloc.domain import Node
from optialloc.errors import (
    BackendUnavailable,
    Conflict,
    InputError,
    LockBusy,
    NotFound,
    OptiallocError,
)

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    machine_type TEXT NOT NULL,
    up INTEGER NOT NULL DEFAULT 1,
    locked INTEGER NOT NULL DEFAULT 0,
    locked_by TEXT,
    description TEXT,
    owner TEXT,
    locked_since TEXT,
    os_type TEXT,
    os_version TEXT,
    arch TEXT,
    ssh_pub_key TEXT
);
CREATE INDEX IF NOT EXISTS nodes_machine_type ON nodes (machine_type);
CREATE INDEX IF NOT EXISTS nodes_locked_by ON nodes (locked_by, description);
"""

_COLUMNS = (
    "name, machine_type, up, locked, locked_by, description, os_type, os_version, arch, ssh_pub_key"
)
#: How long a transaction waits for another process's write lock (milliseconds).
BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class ImportResult:
    """What an import changed: node names added and updated (locks are never touched)."""

    added: tuple[str, ...]
    updated: tuple[str, ...]
    unchanged: int


@dataclass(frozen=True)
class UsageRow:
    """Locked nodes of one machine type held by one owner."""

    owner: str
    machine_type: str
    locked: int


def _row_node(row: sqlite3.Row) -> Node:
    return Node(
        name=row["name"],
        machine_type=row["machine_type"],
        up=bool(row["up"]),
        locked=bool(row["locked"]),
        locked_by=row["locked_by"],
        description=row["description"],
        os_type=row["os_type"],
        os_version=row["os_version"],
        arch=row["arch"],
        ssh_pub_key=row["ssh_pub_key"],
    )


def _check_description(description: str) -> None:
    if not description:
        raise InputError(
            "description", "a lock needs a description naming the job (its archive path)"
        )


def _unique(names: Sequence[str]) -> list[str]:
    """The names in order; a name given twice is a caller bug, refused here."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError("names", f"node {name} is named twice: name each node once")
        seen.add(name)
    return list(names)


class EmbeddedInventory:
    """Nodes and locks in a SQLite file; see the module docstring for concurrency."""

    def __init__(self, path: str | Path, locked_by: str) -> None:
        self.path = str(path)
        self.locked_by = locked_by
        self._mutex = threading.RLock()  # one connection, shared by the threads of a process
        self._node_cache: dict[tuple[object, ...], Node] = {}  # see nodes()
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            with self._write():
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailable(
                f"cannot open the inventory at {self.path} ({exc}): "
                "check state_dir is a writable directory"
            ) from exc

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction: committed on success, rolled back on any error."""
        with self._mutex:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise BackendUnavailable(
                    f"the inventory {self.path} stayed locked by another process for "
                    f"{BUSY_TIMEOUT_MS // 1000} s ({exc}): "
                    "retry, or look for a stuck optialloc process"
                ) from exc
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise BackendUnavailable(f"the inventory {self.path} failed: {exc}") from exc
                raise

    def _read(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._mutex:
            try:
                return list(self._db.execute(sql, params))
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"cannot read the inventory {self.path}: {exc}") from exc

    def _rows(self, db: sqlite3.Connection, names: Sequence[str]) -> dict[str, sqlite3.Row]:
        """The rows of `names`, or `NotFound` naming the unknown ones."""
        rows: dict[str, sqlite3.Row] = {}
        for start in range(0, len(names), 500):  # stay far below SQLite's bound-variable limit
            chunk = names[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in db.execute(f"SELECT {_COLUMNS} FROM nodes WHERE name IN ({marks})", chunk):
                rows[row["name"]] = row
        missing = [name for name in names if name not in rows]
        if missing:
            raise NotFound(
                f"no node named {', '.join(missing)} in the inventory {self.path}: "
                "check the name with `optialloc nodes list` or import the lab"
            )
        return rows

    # -- the Inventory port -------------------------------------------------

    def nodes(self, machine_type: str | None = None) -> list[Node]:
        """Every node (of `machine_type` if given), sorted by name."""
        if machine_type:
            rows = self._read(
                f"SELECT {_COLUMNS} FROM nodes WHERE machine_type = ? ORDER BY name", [machine_type]
            )
        else:
            rows = self._read(f"SELECT {_COLUMNS} FROM nodes ORDER BY name")
        # Read every tick (1,000 nodes at Sepia scale) and mostly unchanged: a row
        # equal to last time's gives last time's (immutable) Node back.
        cache: dict[tuple[object, ...], Node] = self._node_cache
        fresh: dict[tuple[object, ...], Node] = {}
        out: list[Node] = []
        for row in rows:
            values = tuple(row)
            node = cache.get(values)
            if node is None:
                node = _row_node(row)
            fresh[values] = node
            out.append(node)
        if not machine_type:
            self._node_cache = fresh
        return out

    def lock(
        self,
        names: Sequence[str],
        description: str,
        locked_by: str | None = None,
        *,
        owner: str | None = None,
    ) -> list[Node]:
        """Lock exactly `names` for one job as `locked_by`, all-or-nothing (see `Inventory`).

        `locked_by` defaults to this inventory's own; `owner` (who the lock is
        for, shown by `usage()`) defaults to `locked_by`. Unknown names raise
        `NotFound` and nothing is locked.
        """
        names = _unique(names)
        _check_description(description)
        if not names:
            return []
        who = locked_by or self.locked_by
        with self._write() as db:
            return self._lock_in(
                db, names, description, who, owner or who, datetime.now(UTC).isoformat()
            )

    def lock_each(
        self, requests: Sequence[tuple[Sequence[str], str, str | None]]
    ) -> list[list[Node] | OptiallocError]:
        """`lock` for each (names, description, locked_by), one job each, in one transaction.

        Each request is all-or-nothing on its own: a refused one (`LockBusy`,
        `NotFound`) takes nothing and is answered with its error, in place;
        the others are locked. A `BackendUnavailable` is raised for the whole
        batch, and then nothing was locked.
        """
        now = datetime.now(UTC).isoformat()
        results: list[list[Node] | OptiallocError] = []
        with self._write() as db:
            for names, description, locked_by in requests:
                who = locked_by or self.locked_by
                try:
                    _check_description(description)
                    unique = _unique(names)
                    results.append(
                        self._lock_in(db, unique, description, who, who, now) if unique else []
                    )
                except (LockBusy, NotFound, InputError) as exc:
                    results.append(exc)
        return results

    def _lock_in(
        self,
        db: sqlite3.Connection,
        names: list[str],
        description: str,
        locked_by: str,
        owner: str,
        now: str,
    ) -> list[Node]:
        """Lock `names` inside the open transaction; checks everything before any write."""
        rows = self._rows(db, names)
        refused = []
        for name in names:
            row = rows[name]
            if row["locked"]:
                if row["locked_by"] == locked_by and row["description"] == description:
                    continue  # already ours for this job: idempotent
                refused.append(f"{name} is locked by {row['locked_by']} for {row['description']}")
            elif not row["up"]:
                refused.append(f"{name} is down")
        if refused:
            raise LockBusy(
                f"cannot lock {len(refused)} of {len(names)} node(s) for {description}, "
                f"locked none: {'; '.join(refused)}"
            )
        db.executemany(
            "UPDATE nodes SET locked = 1, locked_by = ?, description = ?, owner = ?, "
            "locked_since = ? "
            "WHERE name = ? AND locked = 0",
            [(locked_by, description, owner, now, name) for name in names],
        )
        locked = self._rows(db, names)
        return [_row_node(locked[name]) for name in names]

    def unlock(
        self, names: Sequence[str], description: str, locked_by: str | None = None
    ) -> None:
        """Unlock the named nodes held by `locked_by` (default ours) for `description`.

        Nodes already unlocked are fine. Nodes held by another locker or for
        another description are left locked and reported in one `Conflict`,
        after the rest are unlocked. Unknown names: `NotFound`, nothing changed.
        """
        names = _unique(names)
        who = locked_by or self.locked_by
        with self._write() as db:
            rows = self._rows(db, names)
            refused = [
                f"{name} is locked by {rows[name]['locked_by']} for {rows[name]['description']}"
                for name in names
                if rows[name]["locked"]
                and (rows[name]["locked_by"] != who or rows[name]["description"] != description)
            ]
            db.executemany(
                "UPDATE nodes SET locked = 0, locked_by = NULL, description = NULL, owner = NULL, "
                "locked_since = NULL "
                "WHERE name = ? AND locked = 1 AND locked_by = ? AND description = ?",
                [(name, who, description) for name in names],
            )
        if refused:
            raise Conflict(
                f"not unlocking {len(refused)} node(s) held by someone else "
                f"(unlocking as {who}, for {description}): {'; '.join(refused)}"
            )

    def set_up(self, names: Sequence[str], up: bool) -> None:
        """Mark nodes up or down (locks untouched). Unknown names: `NotFound`, nothing changed."""
        names = _unique(names)
        with self._write() as db:
            self._rows(db, names)
            db.executemany(
                "UPDATE nodes SET up = ? WHERE name = ?", [(int(up), name) for name in names]
            )

    def held(self) -> list[Node]:
        """Nodes locked by our `locked_by`, sorted by name."""
        rows = self._read(
            f"SELECT {_COLUMNS} FROM nodes WHERE locked = 1 AND locked_by = ? ORDER BY name",
            [self.locked_by],
        )
        return [_row_node(row) for row in rows]

    # -- beyond the port ------------------------------------------------------

    def locked_since(self, name: str) -> datetime | None:
        """When `name` was locked (UTC), None when it is free."""
        rows = self._read("SELECT locked_since FROM nodes WHERE name = ?", [name])
        if not rows:
            raise NotFound(f"no node named {name} in the inventory {self.path}")
        value = rows[0]["locked_since"]
        return datetime.fromisoformat(value) if value else None

    def usage(self) -> list[UsageRow]:
        """Locked nodes per owner per machine type (owner: the job's owner, else locked_by)."""
        rows = self._read(
            "SELECT COALESCE(owner, locked_by, '?') AS who, machine_type, COUNT(*) AS n FROM nodes "
            "WHERE locked = 1 GROUP BY who, machine_type ORDER BY who, machine_type"
        )
        return [
            UsageRow(owner=row["who"], machine_type=row["machine_type"], locked=row["n"])
            for row in rows
        ]

    def is_empty(self) -> bool:
        return not self._read("SELECT 1 FROM nodes LIMIT 1")

    def import_nodes(self, nodes: Sequence[Node]) -> ImportResult:
        """Upsert nodes by name in one transaction: new added, attributes updated, locks kept."""
        _unique([node.name for node in nodes])
        added: list[str] = []
        updated: list[str] = []
        unchanged = 0
        with self._write() as db:
            existing = {row["name"]: row for row in db.execute(f"SELECT {_COLUMNS} FROM nodes")}
            for node in nodes:
                values = (
                    node.machine_type,
                    int(node.up),
                    node.os_type,
                    node.os_version,
                    node.arch,
                    node.ssh_pub_key,
                )
                row = existing.get(node.name)
                if row is None:
                    db.execute(
                        "INSERT INTO nodes "
                        "(machine_type, up, os_type, os_version, arch, ssh_pub_key, name) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (*values, node.name),
                    )
                    added.append(node.name)
                elif (
                    tuple(
                        row[key]
                        for key in (
                            "machine_type",
                            "up",
                            "os_type",
                            "os_version",
                            "arch",
                            "ssh_pub_key",
                        )
                    )
                    != values
                ):
                    db.execute(
                        "UPDATE nodes SET machine_type = ?, up = ?, os_type = ?, os_version = ?, "
                        "arch = ?, "
                        "ssh_pub_key = ? WHERE name = ?",
                        (*values, node.name),
                    )
                    updated.append(node.name)
                else:
                    unchanged += 1
        log.info("inventory %s: %d node(s) added, %d updated", self.path, len(added), len(updated))
        return ImportResult(added=tuple(added), updated=tuple(updated), unchanged=unchanged)
