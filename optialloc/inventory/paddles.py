"""The paddles inventory: nodes and locks through the lab's paddles lock server.

Implements `optialloc.ports.Inventory` over paddles' REST API (documented in
teuthology-interfaces.md section 3). A job's nodes are locked as the caller's
`locked_by` (the dispatcher passes the job's owner, as teuthology's own
dispatcher does) with its archive path as `description`, so the job's own
`check_lock`, the supervisor's unlock and `teuthology-nuke` accept them.

paddles locks one node per call, so all-or-nothing is ours to provide:

- exact mode (default): read every node of a tick's jobs (a taken or down one
  fails its job before anything is locked), then lock them, one
  `PUT /nodes/<name>/lock` per node, all of the tick's requests in flight at
  once over the client's pooled keep-alive connections; a job any of whose
  locks failed has what it took unlocked again (also concurrently);
- count mode (`lock_many` config key): one `POST /nodes/lock_many/` per group
  of the Plan's nodes with the same machine type, OS and arch; paddles picks
  the nodes, so `lock` returns different names than it was given.

503 `only N nodes available` and 403 (already locked, also paddles' answer
under contention) are `LockBusy`: try next tick. When paddles stops answering
mid-lock, the nodes a call may have taken are remembered as *orphans* and
released before anything else is done through this adapter, so a partial lock
never outlives the outage. Unlock checks the lock's locked_by and description
itself (some paddles versions only compare locked_by) so another job's nodes
are never released, treats a node that is already unlocked (the job's
supervisor unlocked it) as done, and never uses `unlock_many`, which checks
only locked_by and commits node by node.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace

from optialloc.domain import Node
from optialloc.errors import (
    BackendUnavailable,
    Conflict,
    InputError,
    LockBusy,
    NotFound,
    OptiallocError,
)
from optialloc.inventory.embedded import UsageRow
from optialloc.inventory.paddles_calls import (
    Orphan,
    Pool,
    get_node,
    lock_node,
    node_from_json,
    node_path,
    not_found,
    unlock_node,
)
from optialloc.inventory.paddles_client import POOL_SIZE, PaddlesClient, PaddlesError
from optialloc.inventory.paddles_count import lock_by_count

__all__ = ["PaddlesInventory", "node_from_json"]

log = logging.getLogger(__name__)


#: A lock request: the job's node names, its description and who locks (None: ours).
LockRequest = tuple[Sequence[str], str, str | None]


class PaddlesInventory:
    """`Inventory` over paddles; see the module docstring for how locking works."""

    def __init__(
        self,
        client: PaddlesClient,
        locked_by: str,
        *,
        lock_many: bool = False,
        workers: int = POOL_SIZE,
    ) -> None:
        self.client = client
        self.locked_by = locked_by
        self.lock_many = lock_many
        self._orphans: list[Orphan] = []
        # The dispatcher may lock in its loop and unlock from a monitor thread.
        self._orphans_mutex = threading.RLock()
        self._pool = Pool(workers)

    def new_round(self) -> None:
        """A new tick: paddles may be asked again if it was found away (see the client)."""
        self.client.new_round()

    def close(self) -> None:
        self._pool.close()
        self.client.close()

    def _read(self, name: str) -> Node | None:
        return get_node(self.client, name)

    # -- reading ------------------------------------------------------------

    def list_nodes(self, **query: object) -> list[Node]:
        """The nodes of a `GET /nodes/` query (locked, locked_by, machine_type...), by name."""
        try:
            answer = self.client.request("GET", "/nodes/", query=query)
        except PaddlesError as exc:
            raise BackendUnavailable(
                f"paddles at {self.client.shown_url} cannot list nodes ({exc.message}): "
                f"is {self.client.setting} the paddles base URL?"
            ) from exc
        if not isinstance(answer, list):
            raise BackendUnavailable(
                f"paddles at {self.client.shown_url}: GET /nodes/ did not return a list"
            )
        return sorted((node_from_json(item) for item in answer), key=lambda node: node.name)

    def nodes(self, machine_type: str | None = None) -> list[Node]:
        """Every node paddles knows (of `machine_type` if given), sorted by name."""
        return self.list_nodes(machine_type=machine_type)

    def held(self) -> list[Node]:
        """Nodes locked by this inventory's own `locked_by` (admin locks)."""
        return self.list_nodes(locked=True, locked_by=self.locked_by)

    def usage(self) -> list[UsageRow]:
        """Locked nodes per locker (a job's owner) per machine type."""
        counts: dict[tuple[str, str], int] = {}
        for node in self.list_nodes(locked=True):
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

    def _release(self, orphan: Orphan) -> None:
        if orphan.names is None:
            names = [
                node.name
                for node in self.list_nodes(locked=True, locked_by=orphan.locked_by)
                if node.description == orphan.description and node.name not in orphan.keep
            ]
        else:
            names = sorted(orphan.names)
        outcomes = self._pool.each(
            lambda name: unlock_node(self.client, name, orphan.description, orphan.locked_by), names
        )
        for outcome in outcomes:
            if isinstance(outcome, OptiallocError) and not isinstance(outcome, NotFound):
                raise outcome  # NotFound: deleted meanwhile, nothing left to release

    def roll_back(self, orphan: Orphan) -> None:
        """Undo a failed lock call; if paddles cannot be reached, remember it as an orphan."""
        try:
            self._release(orphan)
        except (BackendUnavailable, Conflict) as exc:
            with self._orphans_mutex:
                self._orphans.append(orphan)
            log.error(
                "could not roll back the partial lock for %s (%s): "
                "it is released as soon as paddles answers",
                orphan.description,
                exc,
            )

    # -- locking --------------------------------------------------------------

    def lock(
        self, names: Sequence[str], description: str, locked_by: str | None = None
    ) -> list[Node]:
        """Lock the nodes for one job as `locked_by`, all-or-nothing (see the module docstring).

        In count mode the returned nodes are the ones paddles chose, possibly not `names`.
        """
        (result,) = self.lock_each([(names, description, locked_by)])
        if isinstance(result, OptiallocError):
            raise result
        return result

    def lock_each(self, requests: Sequence[LockRequest]) -> list[list[Node] | OptiallocError]:
        """`lock` for each (names, description, locked_by), one job each, concurrently.

        Each request is all-or-nothing on its own and answered in place with its
        nodes or its error (`LockBusy`, `NotFound`, `InputError`, and
        `BackendUnavailable` when paddles stopped answering during it: what it
        may have taken is released, now or as soon as paddles answers). A
        `BackendUnavailable` is raised for the whole batch, with nothing locked,
        when the leftovers of an earlier outage cannot be released first.
        """
        results: list[list[Node] | OptiallocError | None] = [None] * len(requests)
        todo: list[int] = []
        for i, (names, description, _who) in enumerate(requests):
            if len(set(names)) != len(names):
                results[i] = InputError("names", "a node is named twice: name each node once")
            elif not description:
                results[i] = InputError(
                    "description", "a lock needs a description naming the job (its archive path)"
                )
            elif not names:
                results[i] = []
            else:
                todo.append(i)
        if todo:
            self._release_orphans()
            if self.lock_many:
                for i in todo:
                    names, description, who = requests[i]
                    try:
                        results[i] = lock_by_count(self, names, description, who or self.locked_by)
                    except OptiallocError as exc:
                        results[i] = exc
            else:
                self._lock_exact([requests[i] for i in todo], todo, results)
        return [r if r is not None else [] for r in results]

    def _lock_exact(
        self,
        requests: Sequence[LockRequest],
        slots: Sequence[int],
        results: list[list[Node] | OptiallocError | None],
    ) -> None:
        # 1. Read every node first (concurrently): it tells who holds a taken node
        # without locking anything, which nodes a job holds already (idempotent,
        # left alone on rollback), and whether one is down, which paddles'
        # per-node lock does not check.
        wanted = sorted({name for names, _, _ in requests for name in names})
        read = dict(zip(wanted, self._pool.each(self._read, wanted), strict=True))
        puts: list[tuple[int, str, str, str]] = []  # (request, node, description, locked_by)
        for k, (names, description, who) in enumerate(requests):
            who = who or self.locked_by
            error = next((r for n in names if isinstance(r := read[n], OptiallocError)), None)
            missing = [n for n in names if read[n] is None]
            if error is not None or missing:
                results[slots[k]] = error or not_found(missing[0])
                continue
            current = {n: read[n] for n in names}
            refused = [
                f"{n} is locked by {node.locked_by} for {node.description}"
                if node.locked
                else f"{n} is down"
                for n, node in current.items()
                if isinstance(node, Node)
                and not _holds(node, description, who)
                and (node.locked or not node.up)
            ]
            if refused:
                results[slots[k]] = LockBusy(
                    f"cannot lock {len(refused)} of {len(names)} node(s) for {description}, "
                    f"locked none: {'; '.join(refused)}"
                )
                continue
            puts.extend(
                (k, n, description, who)
                for n, node in current.items()
                if isinstance(node, Node) and not _holds(node, description, who)
            )
        # 2. Lock every node of the jobs still in, all at once.
        answers = self._pool.each(lambda put: lock_node(self.client, put[1], put[2], put[3]), puts)
        failed: dict[int, OptiallocError] = {}
        taken: dict[int, set[str]] = {}
        for (k, name, _, _), answer in zip(puts, answers, strict=True):
            if isinstance(answer, OptiallocError):
                failed.setdefault(k, answer)
                if isinstance(answer, BackendUnavailable):
                    taken.setdefault(k, set()).add(name)  # unanswered: it may have been applied
            else:
                taken.setdefault(k, set()).add(name)
        # 3. A job with a failed lock gives back what it took (concurrently).
        rollbacks = [
            Orphan(requests[k][1], requests[k][2] or self.locked_by, frozenset(taken.get(k, ())))
            for k in sorted(failed)
        ]
        self._pool.each(self.roll_back, [o for o in rollbacks if o.names])
        for k, (names, description, who) in enumerate(requests):
            if results[slots[k]] is not None:
                continue
            if k in failed:
                results[slots[k]] = failed[k]
                continue
            who = who or self.locked_by
            results[slots[k]] = [
                replace(node, locked=True, locked_by=who, description=description)
                for n in names
                if isinstance(node := read[n], Node)
            ]

    # -- unlocking and up/down ------------------------------------------------------

    def unlock(self, names: Sequence[str], description: str, locked_by: str | None = None) -> None:
        """Unlock nodes held by `locked_by` (default ours) for `description`.

        Nodes already unlocked are fine; nodes held by someone else or for
        something else are left locked and reported in one `Conflict`.
        """
        who = locked_by or self.locked_by
        with contextlib.suppress(BackendUnavailable):  # the unlocks below say so if it is away
            self._release_orphans()
        # One read per node (not a listing of everything locked: constant cost per
        # job). locked_by and description are compared here, not left to paddles:
        # some paddles versions only compare locked_by on unlock.
        names = list(names)
        read = dict(zip(names, self._pool.each(self._read, names), strict=True))
        for answer in read.values():
            if isinstance(answer, OptiallocError):
                raise answer
        missing = [name for name, node in read.items() if node is None]
        if missing:
            raise NotFound(f"paddles has no node named {', '.join(missing)}")
        refused: list[str] = []
        mine: list[str] = []
        for name, node in read.items():
            assert isinstance(node, Node)
            if not node.locked:
                continue  # unlocked already (by the job's supervisor, say): fine
            if _holds(node, description, who):
                mine.append(name)
            else:
                refused.append(f"{name} is locked by {node.locked_by} for {node.description}")
        answers = self._pool.each(
            lambda name: unlock_node(self.client, name, description, who), mine
        )
        for answer in answers:
            if isinstance(answer, Conflict):
                refused.append(str(answer))
            elif isinstance(answer, OptiallocError):
                raise answer
        if refused:
            raise Conflict(
                f"not unlocking {len(refused)} node(s) held by someone else "
                f"(unlocking as {who}, for {description}): {'; '.join(refused)}"
            )

    def set_up(self, names: Sequence[str], up: bool) -> None:
        """Mark nodes up or down, one PUT each; unknown names are reported in one `NotFound`."""
        missing = []
        for name in names:
            try:
                self.client.request("PUT", node_path(name), {"up": up})
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


def _holds(node: Node, description: str, locked_by: str) -> bool:
    return node.locked and node.locked_by == locked_by and node.description == description
