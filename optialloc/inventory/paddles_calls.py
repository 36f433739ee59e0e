"""paddles' node calls, one request each, and a pool that sends many at once.

`get_node`, `lock_node` and `unlock_node` translate paddles' answers into
`optialloc.errors` types (see `optialloc.inventory.paddles` for what each
means there): 404 is `NotFound`; 403/503 on lock is `LockBusy`; 403 on unlock
is `Conflict`, except paddles' "already-unlocked" answer, which is success
(the job's supervisor unlocked the node first); anything else is
`BackendUnavailable`. `Pool.each` runs one call per item on a few threads
(the client's keep-alive connections are shared) and hands back each answer
or its error, in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from optialloc.domain import Node
from optialloc.errors import (
    BackendUnavailable,
    Conflict,
    InputError,
    LockBusy,
    NotFound,
    OptiallocError,
)
from optialloc.inventory.paddles_client import POOL_SIZE, PaddlesClient, PaddlesError

T = TypeVar("T")
R = TypeVar("R")


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
class Orphan:
    """Locks a failed call may have left for `description`, held by `locked_by`.

    `names` when the call knew which nodes it may have taken (exact mode);
    else (count mode) every node locked by `locked_by` for `description` except `keep`.
    """

    description: str
    locked_by: str
    names: frozenset[str] | None
    keep: frozenset[str] = frozenset()


def node_path(name: str, suffix: str = "") -> str:
    return f"/nodes/{quote(name, safe='')}/{suffix}"


def not_found(name: str) -> NotFound:
    return NotFound(f"paddles has no node named {name}: check the name with `optialloc nodes list`")


def get_node(client: PaddlesClient, name: str) -> Node | None:
    """`GET /nodes/<name>/`: the node, or None when paddles has no such node."""
    try:
        return node_from_json(client.request("GET", node_path(name)))
    except PaddlesError as exc:
        if exc.status == 404:
            return None
        raise BackendUnavailable(f"paddles failed to read node {name}: {exc}") from exc


def lock_node(client: PaddlesClient, name: str, description: str, locked_by: str) -> None:
    """`PUT /nodes/<name>/lock` locking it as `locked_by` for `description`."""
    body = {"locked": True, "locked_by": locked_by, "description": description}
    try:
        client.request("PUT", node_path(name, "lock"), body)
    except PaddlesError as exc:
        if exc.status == 404:
            raise not_found(name) from exc
        if exc.status in (403, 503):
            raise LockBusy(f"cannot lock {name} for {description} ({exc.message})") from exc
        if exc.status == 400:
            raise InputError("lock", f"paddles refused to lock {name}: {exc.message}") from exc
        raise BackendUnavailable(f"paddles failed to lock {name}: {exc}") from exc


def unlock_node(client: PaddlesClient, name: str, description: str, locked_by: str) -> None:
    """`PUT /nodes/<name>/lock` unlocking it as `locked_by`; already unlocked is fine."""
    body = {"locked": False, "locked_by": locked_by, "description": description}
    try:
        client.request("PUT", node_path(name, "lock"), body)
    except PaddlesError as exc:
        if exc.status == 403 and "already" in exc.message.lower():
            return  # unlocked meanwhile (the job's supervisor did): what we wanted
        if exc.status == 404:
            raise NotFound(f"paddles has no node named {name}") from exc
        if exc.status == 403:
            raise Conflict(
                f"paddles refused to unlock {name} for {description}: {exc.message}"
            ) from exc
        raise BackendUnavailable(f"paddles failed to unlock {name}: {exc}") from exc


class Pool:
    """A few threads sending calls at once (started on first use)."""

    def __init__(self, workers: int = POOL_SIZE) -> None:
        self.workers = max(1, workers)
        self._executor: ThreadPoolExecutor | None = None
        self._mutex = threading.Lock()

    def each(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R | OptiallocError]:
        """`fn` over `items`, concurrently; each answer or its `OptiallocError`, in order."""

        def call(item: T) -> R | OptiallocError:
            try:
                return fn(item)
            except OptiallocError as exc:
                return exc

        if len(items) <= 1 or self.workers == 1:
            return [call(item) for item in items]
        with self._mutex:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="paddles")
            executor = self._executor
        return list(executor.map(call, items))

    def close(self) -> None:
        with self._mutex:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
