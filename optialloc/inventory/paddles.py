"""The paddles inventory: nodes and locks through the lab's paddles lock server.

Implements `optialloc.ports.Inventory` over paddles' REST API (documented in
teuthology-interfaces.md section 3). paddles locks one node per call, so
all-or-nothing is ours to provide:

- exact mode (default): read each of the Plan's nodes (a taken or down one
  fails the call before anything is locked), then lock them one
  `PUT /nodes/<name>/lock` at a time, in name order (two lockers wanting the
  same nodes collide on the first shared one instead of each taking half),
  and on any failure unlock what this call took;
- count mode (`lock_many` config key): one `POST /nodes/lock_many/` per group
  of the Plan's nodes with the same machine type, OS and arch; paddles picks
  the nodes, so `lock` returns different names than it was given.

503 `only N nodes available` and 403 (already locked, also paddles' answer
under contention) are `LockBusy`: try next tick. When paddles stops answering
mid-lock, the nodes this call may have taken are remembered as *orphans* and
released before anything else is done through this adapter, so a partial lock
never outlives the outage. Unlock checks the lock's description itself (some
paddles versions only compare locked_by) so another job's nodes are never
released, and never uses `unlock_many`, which checks only locked_by and
commits node by node.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from optialloc.domain import Node
from optialloc.errors import BackendUnavailable, Conflict, InputError, LockBusy, NotFound
from optialloc.inventory.embedded import UsageRow
from optialloc.inventory.paddles_client import PaddlesClient, PaddlesError

log = logging.getLogger(__name__)


def node_from_json(data: dict[str, Any]) -> Node:
    """A `Node` from paddles' node JSON."""
    return Node(
        name=str(data["name"]),
        machine_type=str(data.get("machine_type") or ""),
        up=bool(data.get("up")),
        locked=bool(data.get("locked")),
        locked_by=data.get("locked_by"),
        description=data.get("description"),
        os_type=data.get("os_type"),
        os_version=data.get("os_version"),
        arch=data.get("arch"),
        ssh_pub_key=data.get("ssh_pub_key"),
    )


@dataclass(frozen=True)
class _Orphan:
    """Locks a failed call may have left for `description`.

    `names` when the call knew which nodes it may have taken (exact mode);
    else (count mode) every node held for `description` except `keep`.
    """

    description: str
    names: frozenset[str] | None
    keep: frozenset[str] = frozenset()


def _node_path(name: str, suffix: str = "") -> str:
    return f"/nodes/{quote(name, safe='')}/{suffix}"


class PaddlesInventory:
    """`Inventory` over paddles; see the module docstring for how locking works."""

    def __init__(self, client: PaddlesClient, locked_by: str, *, lock_many: bool = False) -> None:
        self.client = client
        self.locked_by = locked_by
        self.lock_many = lock_many
        self._orphans: list[_Orphan] = []
        # The dispatcher may lock in its loop and unlock from a monitor thread.
        self._orphans_mutex = threading.RLock()

    # -- reading ------------------------------------------------------------

    def _list(self, **query: object) -> list[Node]:
        try:
            answer = self.client.request("GET", "/nodes/", query=query)
        except PaddlesError as exc:
            raise BackendUnavailable(
                f"paddles at {self.client.base_url} cannot list nodes ({exc.message}): "
                f"is {self.client.setting} the paddles base URL?"
            ) from exc
        if not isinstance(answer, list):
            raise BackendUnavailable(
                f"paddles at {self.client.base_url}: GET /nodes/ did not return a list"
            )
        return sorted((node_from_json(item) for item in answer), key=lambda node: node.name)

    def _get(self, name: str) -> Node | None:
        try:
            return node_from_json(self.client.request("GET", _node_path(name)))
        except PaddlesError as exc:
            if exc.status == 404:
                return None
            raise

    def nodes(self, machine_type: str | None = None) -> list[Node]:
        """Every node paddles knows (of `machine_type` if given), sorted by name."""
        return self._list(machine_type=machine_type)

    def held(self) -> list[Node]:
        """Nodes locked by our `locked_by`."""
        return self._list(locked=True, locked_by=self.locked_by)

    def usage(self) -> list[UsageRow]:
        """Locked nodes per locker per machine type (paddles has no job owner field)."""
        counts: dict[tuple[str, str], int] = {}
        for node in self._list(locked=True):
            key = (node.locked_by or "?", node.machine_type)
            counts[key] = counts.get(key, 0) + 1
        return [UsageRow(owner=o, machine_type=t, locked=n) for (o, t), n in sorted(counts.items())]

    # -- orphans --------------------------------------------------------------

    def _release_orphans(self) -> None:
        """Release what failed calls may have left; `BackendUnavailable` if paddles is away."""
        with self._orphans_mutex:
            while self._orphans:
                orphan = self._orphans[0]
                self._release(orphan)
                self._orphans.pop(0)
                log.info("released the leftover locks for %s", orphan.description)

    def _release(self, orphan: _Orphan) -> None:
        if orphan.names is None:
            names = [
                node.name
                for node in self.held()
                if node.description == orphan.description and node.name not in orphan.keep
            ]
        else:
            names = sorted(orphan.names)
        for name in names:
            with contextlib.suppress(NotFound):  # deleted meanwhile: nothing left to release
                self._unlock_one(name, orphan.description)

    def _rollback(self, orphan: _Orphan) -> None:
        """Undo a failed lock call; if paddles cannot be reached, remember it as an orphan."""
        try:
            self._release(orphan)
        except (BackendUnavailable, PaddlesError, Conflict) as exc:
            with self._orphans_mutex:
                self._orphans.append(orphan)
            log.error(
                "could not roll back the partial lock for %s (%s): "
                "it is released as soon as paddles answers",
                orphan.description,
                exc,
            )

    # -- locking --------------------------------------------------------------

    def lock(self, names: Sequence[str], description: str, owner: str | None = None) -> list[Node]:
        """Lock the nodes for one job, all-or-nothing (see the module docstring).

        `owner` is accepted for the port's sake and not stored (paddles has
        no such field). In count mode the returned nodes are the ones paddles
        chose, possibly not `names`.
        """
        del owner
        if len(set(names)) != len(names):
            raise InputError("names", "a node is named twice: name each node once")
        if not description:
            raise InputError(
                "description", "a lock needs a description naming the job (its archive path)"
            )
        if not names:
            return []
        self._release_orphans()
        if self.lock_many:
            before = {node.name: node for node in self.held() if node.description == description}
            return self._lock_by_count(names, description, before, frozenset(before))
        return self._lock_exact(list(names), description)

    def _lock_exact(self, names: list[str], description: str) -> list[Node]:
        # Read each node first (a constant number of requests per job, whatever we
        # hold): it tells who holds a taken node without locking anything, which of
        # them this job holds already (left alone on rollback), and whether one is
        # down, which paddles' per-node lock does not check.
        current: dict[str, Node] = {}
        for name in names:
            node = self._get(name)
            if node is None:
                raise NotFound(
                    f"paddles has no node named {name}: check the name with `optialloc nodes list`"
                )
            current[name] = node
        ours = {n for n, node in current.items() if self._holds(node, description)}
        refused = [
            f"{n} is locked by {node.locked_by} for {node.description}"
            if node.locked
            else f"{n} is down"
            for n, node in current.items()
            if n not in ours and (node.locked or not node.up)
        ]
        if refused:
            raise LockBusy(
                f"cannot lock {len(refused)} of {len(names)} node(s) for {description}, "
                f"locked none: {'; '.join(refused)}"
            )
        body = {"locked": True, "locked_by": self.locked_by, "description": description}
        taken: list[str] = []
        # In name order: two lockers wanting the same nodes collide on the first shared one.
        for name in sorted(set(names) - ours):
            try:
                self.client.request("PUT", _node_path(name, "lock"), body)
            except BackendUnavailable:
                # the unanswered call may have locked `name`: release it too
                self._rollback(_Orphan(description, frozenset([*taken, name])))
                raise
            except PaddlesError as exc:
                self._rollback(_Orphan(description, frozenset(taken)))
                raise self._lock_refused(name, description, exc, len(names)) from exc
            taken.append(name)
        return [
            replace(current[n], locked=True, locked_by=self.locked_by, description=description)
            for n in names
        ]

    def _holds(self, node: Node, description: str) -> bool:
        return node.locked and node.locked_by == self.locked_by and node.description == description

    def _lock_refused(
        self, name: str, description: str, exc: PaddlesError, total: int
    ) -> Exception:
        if exc.status == 404:
            return NotFound(
                f"paddles has no node named {name}: check the name with `optialloc nodes list`"
            )
        if exc.status in (403, 503):
            return LockBusy(
                f"cannot lock {name} for {description} ({exc.message}); locked none of {total}"
            )
        if exc.status == 400:
            return InputError("lock", f"paddles refused to lock {name}: {exc.message}")
        return BackendUnavailable(f"paddles failed to lock {name}: {exc}")

    def _lock_by_count(
        self, names: Sequence[str], description: str, before: dict[str, Node], keep: frozenset[str]
    ) -> list[Node]:
        groups: dict[tuple[str, str | None, str | None, str | None], int] = {}
        for name in names:
            node = before.get(name) or self._get(name)
            if node is None:
                raise NotFound(
                    f"paddles has no node named {name}: check the name with `optialloc nodes list`"
                )
            key = (node.machine_type, node.os_type, node.os_version, node.arch)
            groups[key] = groups.get(key, 0) + 1
        if len(before) == len(names):
            return list(before.values())  # this job holds its nodes already: idempotent
        taken: list[Node] = []
        for (machine_type, os_type, os_version, arch), count in groups.items():
            body: dict[str, Any] = {
                "count": count,
                "locked_by": self.locked_by,
                "machine_type": machine_type,
                "description": description,
            }
            body.update(
                {
                    k: v
                    for k, v in (("os_type", os_type), ("os_version", os_version), ("arch", arch))
                    if v
                }
            )
            try:
                # Not retried blindly: a lock_many that was applied but not answered would
                # lock a second set; the rollback below releases whatever it took instead.
                answer = self.client.request("POST", "/nodes/lock_many/", body, retry=False)
            except BackendUnavailable:
                self._rollback(_Orphan(description, None, keep))
                raise
            except PaddlesError as exc:
                self._rollback(_Orphan(description, None, keep))
                if exc.status in (403, 503):
                    raise LockBusy(
                        f"cannot lock {count} {machine_type} node(s) for {description} "
                        f"({exc.message})"
                    ) from exc
                raise BackendUnavailable(
                    f"paddles refused lock_many for {description}: {exc}"
                ) from exc
            if not isinstance(answer, list) or len(answer) != count:
                self._rollback(_Orphan(description, None, keep))
                raise BackendUnavailable(
                    f"paddles lock_many answered {answer!r} for {count} node(s)"
                )
            taken.extend(node_from_json(item) for item in answer)
        return taken

    # -- unlocking and up/down ------------------------------------------------------

    def _unlock_one(self, name: str, description: str) -> None:
        body = {"locked": False, "locked_by": self.locked_by, "description": description}
        try:
            self.client.request("PUT", _node_path(name, "lock"), body)
        except PaddlesError as exc:
            if exc.status == 403 and "already" in exc.message.lower():
                return  # unlocked meanwhile: what we wanted
            if exc.status == 404:
                raise NotFound(f"paddles has no node named {name}") from exc
            if exc.status == 403:
                raise Conflict(
                    f"paddles refused to unlock {name} for {description}: {exc.message}"
                ) from exc
            raise BackendUnavailable(f"paddles failed to unlock {name}: {exc}") from exc

    def unlock(self, names: Sequence[str], description: str) -> None:
        """Unlock nodes held by us for `description`; others' are refused with one `Conflict`."""
        with contextlib.suppress(BackendUnavailable):  # the unlocks below say so if it is away
            self._release_orphans()
        # One read per node (not a listing of everything we hold: constant cost per
        # job). The description is compared here, not left to paddles: some paddles
        # versions only compare locked_by on unlock.
        current = {name: self._get(name) for name in names}
        missing = [name for name, node in current.items() if node is None]
        if missing:
            raise NotFound(f"paddles has no node named {', '.join(missing)}")
        refused: list[str] = []
        for name, node in current.items():
            assert node is not None
            if not node.locked:
                continue  # unlocked already: fine
            if not self._holds(node, description):
                refused.append(f"{name} is locked by {node.locked_by} for {node.description}")
                continue
            try:
                self._unlock_one(name, description)
            except Conflict as exc:
                refused.append(str(exc))
        if refused:
            raise Conflict(
                f"not unlocking {len(refused)} node(s) held by someone else "
                f"(we are {self.locked_by}, for {description}): {'; '.join(refused)}"
            )

    def set_up(self, names: Sequence[str], up: bool) -> None:
        """Mark nodes up or down, one PUT each; unknown names are reported in one `NotFound`."""
        missing = []
        for name in names:
            try:
                self.client.request("PUT", _node_path(name), {"up": up})
            except PaddlesError as exc:
                if exc.status != 404:
                    raise BackendUnavailable(
                        f"paddles failed to mark {name} up={up}: {exc}"
                    ) from exc
                missing.append(name)
        if missing:
            raise NotFound(
                f"paddles has no node named {', '.join(missing)} (the others were updated)"
            )

    def orphans(self) -> Iterable[str]:
        """Descriptions whose partial locks still wait to be released (for status pages)."""
        with self._orphans_mutex:
            return [orphan.description for orphan in self._orphans]
