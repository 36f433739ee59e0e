"""Test support for the inventory adapters: a small lab and a factory per backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from paddles_server import FakePaddles

from optialloc.domain import Node
from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.inventory.paddles import PaddlesInventory
from optialloc.inventory.paddles_client import PaddlesClient

#: 6 smithi (smithi006 down), 2 mira, 1 gibba.
LAB = (
    *(
        Node(
            f"smithi00{i}",
            "smithi",
            os_type="ubuntu",
            os_version="22.04",
            arch="x86_64",
            ssh_pub_key=f"ssh-ed25519 KEY{i}",
        )
        for i in range(1, 6)
    ),
    Node("smithi006", "smithi", up=False, os_type="ubuntu", os_version="22.04", arch="x86_64"),
    Node("mira001", "mira", os_type="centos", os_version="9", arch="x86_64"),
    Node("mira002", "mira", os_type="centos", os_version="9", arch="x86_64"),
    Node("gibba001", "gibba", os_type="ubuntu", os_version="22.04", arch="aarch64"),
)

Factory = Callable[[str], EmbeddedInventory | PaddlesInventory]


def paddles_client(url: str, timeout: float = 2.0, attempts: int = 2) -> PaddlesClient:
    """A client with short time-outs and back-off, so failure tests stay quick."""
    return PaddlesClient(url, timeout=timeout, attempts=attempts, backoff_s=0.01)


def fill_paddles(server: FakePaddles, nodes: tuple[Node, ...] = LAB) -> None:
    for node in nodes:
        server.add_node(
            node.name,
            node.machine_type,
            up=node.up,
            os_type=node.os_type,
            os_version=node.os_version,
            arch=node.arch,
            ssh_pub_key=node.ssh_pub_key,
        )


@contextmanager
def backend(kind: str, tmp_path: Path) -> Iterator[tuple[Factory, FakePaddles | None]]:
    """A fresh backend holding `LAB`, and a factory of inventories on it for a given locked_by."""
    if kind == "embedded":
        path = tmp_path / "inventory.sqlite"
        EmbeddedInventory(path, "setup").import_nodes(LAB)
        opened: list[EmbeddedInventory] = []

        def embedded(locked_by: str) -> EmbeddedInventory:
            opened.append(EmbeddedInventory(path, locked_by))
            return opened[-1]

        try:
            yield embedded, None
        finally:
            for inventory in opened:
                inventory.close()
        return
    with FakePaddles() as server:
        fill_paddles(server)

        def paddles(locked_by: str) -> PaddlesInventory:
            return PaddlesInventory(paddles_client(server.url), locked_by)

        yield paddles, server
