"""The `Inventory` contract, run against the embedded (SQLite) and paddles adapters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from inventory_support import LAB, Factory, backend

from optialloc.config import Config
from optialloc.errors import BackendUnavailable, Conflict, InputError, LockBusy, NotFound
from optialloc.inventory import open_inventory
from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.inventory.paddles import PaddlesInventory
from optialloc.ports import Inventory


@pytest.fixture(params=["embedded", "paddles"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    with backend(request.param, tmp_path) as (factory, _server):
        yield factory


def locked(inventory: Inventory) -> dict[str, tuple[str | None, str | None]]:
    return {n.name: (n.locked_by, n.description) for n in inventory.nodes() if n.locked}


def test_is_an_inventory(make: Factory) -> None:
    inventory = make("optialloc@a")
    assert isinstance(inventory, Inventory)
    assert inventory.locked_by == "optialloc@a"


def test_lists_every_node_with_its_attributes(make: Factory) -> None:
    nodes = {n.name: n for n in make("a").nodes()}
    assert set(nodes) == {n.name for n in LAB}
    assert nodes["smithi001"].machine_type == "smithi"
    assert nodes["smithi001"].os_version == "22.04"
    assert nodes["smithi001"].ssh_pub_key == "ssh-ed25519 KEY1"
    assert nodes["gibba001"].arch == "aarch64"
    assert nodes["smithi006"].up is False
    assert not any(n.locked for n in nodes.values())


def test_lists_one_machine_type(make: Factory) -> None:
    assert [n.name for n in make("a").nodes("mira")] == ["mira001", "mira002"]
    assert make("a").nodes("nosuchtype") == []


def test_lock_takes_exactly_the_named_nodes(make: Factory) -> None:
    inventory = make("optialloc@a")
    got = inventory.lock(["smithi002", "mira001"], "/archive/run/1")
    assert sorted(n.name for n in got) == ["mira001", "smithi002"]
    assert all(n.locked and n.locked_by == "optialloc@a" for n in got)
    assert all(n.description == "/archive/run/1" for n in got)
    assert {n.name: n.ssh_pub_key for n in got}["smithi002"] == "ssh-ed25519 KEY2"
    assert locked(inventory) == {
        "smithi002": ("optialloc@a", "/archive/run/1"),
        "mira001": ("optialloc@a", "/archive/run/1"),
    }


def test_relock_for_the_same_job_is_idempotent(make: Factory) -> None:
    inventory = make("optialloc@a")
    inventory.lock(["smithi001", "smithi002"], "/archive/run/1")
    again = inventory.lock(["smithi001", "smithi002"], "/archive/run/1")
    assert sorted(n.name for n in again) == ["smithi001", "smithi002"]
    assert set(locked(inventory)) == {"smithi001", "smithi002"}


def test_lock_is_all_or_nothing_when_one_node_is_taken(make: Factory) -> None:
    other, us = make("someone@else"), make("optialloc@a")
    other.lock(["smithi003"], "/archive/theirs/7")
    with pytest.raises(LockBusy, match="smithi003"):
        us.lock(["smithi001", "smithi002", "smithi003", "smithi004"], "/archive/run/1")
    assert locked(us) == {"smithi003": ("someone@else", "/archive/theirs/7")}


def test_same_locker_other_job_is_busy(make: Factory) -> None:
    us = make("optialloc@a")
    us.lock(["smithi001"], "/archive/run/1")
    with pytest.raises(LockBusy):
        us.lock(["smithi005", "smithi001"], "/archive/run/2")
    assert locked(us) == {"smithi001": ("optialloc@a", "/archive/run/1")}


def test_a_down_node_is_never_locked(make: Factory) -> None:
    us = make("optialloc@a")
    with pytest.raises(LockBusy, match="smithi006"):
        us.lock(["smithi001", "smithi006"], "/archive/run/1")
    assert locked(us) == {}


def test_unknown_node_is_not_found_and_nothing_is_locked(make: Factory) -> None:
    us = make("optialloc@a")
    with pytest.raises(NotFound, match="smithi999"):
        us.lock(["smithi001", "smithi999"], "/archive/run/1")
    assert locked(us) == {}


def test_lock_refuses_bad_arguments(make: Factory) -> None:
    us = make("optialloc@a")
    with pytest.raises(InputError, match="twice"):
        us.lock(["smithi001", "smithi001"], "/archive/run/1")
    with pytest.raises(InputError, match="description"):
        us.lock(["smithi001"], "")
    assert us.lock([], "/archive/run/1") == []
    assert locked(us) == {}


def test_unlock_releases_our_nodes(make: Factory) -> None:
    us = make("optialloc@a")
    us.lock(["smithi001", "smithi002"], "/archive/run/1")
    us.unlock(["smithi001", "smithi002"], "/archive/run/1")
    assert locked(us) == {}
    us.unlock(["smithi001"], "/archive/run/1")  # already unlocked: fine
    assert locked(us) == {}


def test_unlock_with_another_description_is_refused(make: Factory) -> None:
    us = make("optialloc@a")
    us.lock(["smithi001"], "/archive/run/1")
    us.lock(["smithi002"], "/archive/run/2")
    with pytest.raises(Conflict, match="smithi001"):
        us.unlock(["smithi001", "smithi002"], "/archive/run/2")
    assert locked(us) == {"smithi001": ("optialloc@a", "/archive/run/1")}


def test_unlock_of_another_lockers_node_is_refused(make: Factory) -> None:
    other, us = make("someone@else"), make("optialloc@a")
    other.lock(["mira002"], "/archive/theirs/7")
    with pytest.raises(Conflict, match="someone@else"):
        us.unlock(["mira002"], "/archive/theirs/7")
    assert locked(us) == {"mira002": ("someone@else", "/archive/theirs/7")}


def test_unlock_unknown_node_is_not_found(make: Factory) -> None:
    with pytest.raises(NotFound, match="nosuch"):
        make("a").unlock(["nosuch"], "/archive/run/1")


def test_held_lists_only_our_locks(make: Factory) -> None:
    other, us = make("someone@else"), make("optialloc@a")
    other.lock(["smithi001"], "/archive/theirs/7")
    us.lock(["smithi002", "gibba001"], "/archive/run/1")
    us.lock(["mira001"], "/archive/run/2")
    assert sorted(n.name for n in us.held()) == ["gibba001", "mira001", "smithi002"]
    assert [n.name for n in other.held()] == ["smithi001"]


def test_mark_down_and_up(make: Factory) -> None:
    us = make("optialloc@a")
    us.set_up(["smithi001", "smithi002"], False)
    assert {n.name for n in us.nodes() if not n.up} == {"smithi001", "smithi002", "smithi006"}
    with pytest.raises(LockBusy):
        us.lock(["smithi001"], "/archive/run/1")
    us.set_up(["smithi001"], True)
    assert us.lock(["smithi001"], "/archive/run/1")[0].up


def test_mark_down_keeps_the_lock(make: Factory) -> None:
    us = make("optialloc@a")
    us.lock(["smithi003"], "/archive/run/1")
    us.set_up(["smithi003"], False)
    node = next(n for n in us.nodes() if n.name == "smithi003")
    assert (node.up, node.locked, node.description) == (False, True, "/archive/run/1")


def test_mark_unknown_node_is_not_found(make: Factory) -> None:
    with pytest.raises(NotFound, match="nosuch"):
        make("a").set_up(["nosuch"], False)


def test_usage_counts_locks_per_locker_and_type(make: Factory) -> None:
    other, us = make("someone@else"), make("optialloc@a")
    other.lock(["smithi001"], "/archive/theirs/7")
    us.lock(["smithi002", "smithi003", "mira001"], "/archive/run/1")
    rows = {(r.owner, r.machine_type): r.locked for r in us.usage()}  # type: ignore[union-attr]
    assert rows == {
        ("someone@else", "smithi"): 1,
        ("optialloc@a", "smithi"): 2,
        ("optialloc@a", "mira"): 1,
    }


# -- the embedded adapter and the factories ----------------------------------------------


def test_embedded_records_locked_since_and_owner(tmp_path: Path) -> None:
    inventory = EmbeddedInventory(tmp_path / "inv.sqlite", "optialloc@a")
    inventory.import_nodes(LAB)
    before = datetime.now(UTC)
    inventory.lock(["smithi001"], "/archive/r/1", owner="scheduled_alice@host")
    since = inventory.locked_since("smithi001")
    assert since is not None and since >= before and since.tzinfo is not None
    assert inventory.locked_since("smithi002") is None
    assert [(r.owner, r.machine_type, r.locked) for r in inventory.usage()] == [
        ("scheduled_alice@host", "smithi", 1)
    ]
    inventory.unlock(["smithi001"], "/archive/r/1")
    assert inventory.locked_since("smithi001") is None


def test_embedded_unopenable_file_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(BackendUnavailable, match="check state_dir"):
        EmbeddedInventory(blocker / "inventory.sqlite", "a")


def test_factory_seeds_the_demo_lab_once(tmp_path: Path) -> None:
    config = Config(state_dir=str(tmp_path), locked_by="optialloc@a")
    inventory = open_inventory(config)
    assert isinstance(inventory, EmbeddedInventory)
    assert inventory.path == str(tmp_path / "inventory.sqlite")
    assert len(inventory.nodes()) == 14
    inventory.set_up(["mira004"], True)
    assert all(n.up for n in open_inventory(config).nodes())  # not re-imported over changes


def test_factory_imports_the_configured_lab(tmp_path: Path) -> None:
    config = Config(state_dir=str(tmp_path), lab="fixtures/labs/sepia.yaml")
    assert len(open_inventory(config).nodes("gibba")) == 40


def test_factory_refuses_a_bad_configured_lab(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_inventory(Config(state_dir=str(tmp_path), lab=str(tmp_path / "missing.yaml")))


def test_factory_picks_paddles_when_lock_server_is_set() -> None:
    config = Config(lock_server="http://127.0.0.1:9/", locked_by="optialloc@a", lock_many=True)
    inventory = open_inventory(config)
    assert isinstance(inventory, PaddlesInventory)
    assert (inventory.locked_by, inventory.lock_many) == ("optialloc@a", True)
