"""paddles' count mode (`lock_many: true`): paddles picks a job's nodes.

One `POST /nodes/lock_many/` per group of the Plan's nodes with the same
machine type, OS type/version and arch, as the job's owner with its archive
path as description; the returned nodes (not the Plan's names) are the job's.
A job that already holds its nodes gets them back without a request (paddles
no longer recycles a locker's nodes itself). A lock_many is never retried
blindly (one applied but unanswered would lock a second set): on any failure
every node locked for the description that the job did not hold before is
unlocked, now or, if paddles is away, as an orphan as soon as it answers.
503 `only N nodes available` and 403 are `LockBusy`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from optialloc.domain import Node
from optialloc.errors import BackendUnavailable, LockBusy
from optialloc.inventory.paddles_calls import Orphan, get_node, node_from_json, not_found
from optialloc.inventory.paddles_client import PaddlesClient, PaddlesError


class Locker(Protocol):
    """What count mode needs of `optialloc.inventory.paddles.PaddlesInventory`."""

    client: PaddlesClient

    def list_nodes(self, **query: object) -> list[Node]: ...
    def roll_back(self, orphan: Orphan) -> None: ...


def lock_by_count(inv: Locker, names: Sequence[str], description: str, who: str) -> list[Node]:
    """Lock by count for one job as `who` (see the module docstring)."""
    before = {
        node.name: node
        for node in inv.list_nodes(locked=True, locked_by=who)
        if node.description == description
    }
    keep = frozenset(before)
    groups: dict[tuple[str, str | None, str | None, str | None], int] = {}
    for name in names:
        node = before.get(name) or get_node(inv.client, name)
        if node is None:
            raise not_found(name)
        key = (node.machine_type, node.os_type, node.os_version, node.arch)
        groups[key] = groups.get(key, 0) + 1
    if len(before) == len(names):
        return list(before.values())  # this job holds its nodes already: idempotent
    taken: list[Node] = []
    for (machine_type, os_type, os_version, arch), count in groups.items():
        body: dict[str, Any] = {
            "count": count,
            "locked_by": who,
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
            answer = inv.client.request("POST", "/nodes/lock_many/", body, retry=False)
        except BackendUnavailable:
            inv.roll_back(Orphan(description, who, None, keep))
            raise
        except PaddlesError as exc:
            inv.roll_back(Orphan(description, who, None, keep))
            if exc.status in (403, 503):
                raise LockBusy(
                    f"cannot lock {count} {machine_type} node(s) for {description} ({exc.message})"
                ) from exc
            raise BackendUnavailable(f"paddles refused lock_many for {description}: {exc}") from exc
        if not isinstance(answer, list) or len(answer) != count:
            inv.roll_back(Orphan(description, who, None, keep))
            raise BackendUnavailable(f"paddles lock_many answered {answer!r} for {count} node(s)")
        taken.extend(node_from_json(item) for item in answer)
    return taken
