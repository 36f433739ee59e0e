"""The paddles adapter against paddles' sharp edges (a look-alike server on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import free_port
from inventory_support import fill_paddles, paddles_client
from paddles_server import FakePaddles

from optialloc.errors import BackendUnavailable, ConfigError, Conflict, LockBusy, NotFound
from optialloc.inventory.paddles import PaddlesInventory
from optialloc.inventory.paddles_client import PaddlesError

US = "optialloc@test"


@pytest.fixture
def server() -> Iterator[FakePaddles]:
    with FakePaddles() as fake:
        fill_paddles(fake)
        yield fake


def inventory(
    server: FakePaddles, *, lock_many: bool = False, timeout: float = 2.0, attempts: int = 2
) -> PaddlesInventory:
    return PaddlesInventory(paddles_client(server.url, timeout, attempts), US, lock_many=lock_many)


# -- lock_many (by count) ----------------------------------------------------------


def test_lock_many_returns_the_nodes_paddles_chose(server: FakePaddles) -> None:
    server.nodes["smithi001"].update(locked=True, locked_by="x", description="/theirs")
    got = inventory(server, lock_many=True).lock(["smithi001", "smithi002"], "/archive/r/1")
    assert len(got) == 2 and all(n.machine_type == "smithi" for n in got)
    assert "smithi001" not in {n.name for n in got}  # the Plan's names are replaced
    assert {n: v for n, v in server.locked_nodes().items() if v[0] == US} == {
        n.name: (US, "/archive/r/1") for n in got
    }
    body_calls = [p for m, p in server.requests if p == "/nodes/lock_many/"]
    assert body_calls == ["/nodes/lock_many/"]


def test_lock_many_again_for_the_same_job_takes_nothing_more(server: FakePaddles) -> None:
    inv = inventory(server, lock_many=True)
    first = inv.lock(["smithi001", "smithi002"], "/archive/r/1")
    again = inv.lock(["smithi001", "smithi002"], "/archive/r/1")
    assert {n.name for n in again} == {n.name for n in first}
    assert len(server.locked_nodes()) == 2


def test_lock_many_503_is_busy_and_takes_nothing(server: FakePaddles) -> None:
    server.nodes["mira002"].update(locked=True, locked_by="x", description="/theirs")
    with pytest.raises(LockBusy, match="only 1 nodes available"):
        inventory(server, lock_many=True).lock(["smithi003", "mira001", "mira002"], "/r/1")
    # smithi003 was a separate group: it may have been locked first, and was rolled back
    assert set(server.locked_nodes()) == {"mira002"}


def test_lock_many_contention_403_is_busy_then_works_next_tick(server: FakePaddles) -> None:
    server.busy_lock_many = 1
    inv = inventory(server, lock_many=True)
    with pytest.raises(LockBusy, match="already-locked"):
        inv.lock(["smithi001"], "/archive/r/1")
    assert server.locked_nodes() == {}
    assert len(inv.lock(["smithi001"], "/archive/r/1")) == 1


def test_lock_many_rolls_back_earlier_groups(server: FakePaddles) -> None:
    for name in ("mira001", "mira002"):
        server.nodes[name].update(locked=True, locked_by="x", description="/theirs")
    with pytest.raises(LockBusy):
        inventory(server, lock_many=True).lock(["smithi001", "smithi002", "mira001"], "/r/1")
    assert set(server.locked_nodes()) == {"mira001", "mira002"}  # only theirs remain


def test_a_node_taken_between_reading_and_locking_rolls_back(server: FakePaddles) -> None:
    inv = inventory(server)
    inv.lock(["smithi001"], "/archive/r/1")  # held before: must survive the rollback
    server.race_lock["smithi003"] = ("someone@else", "/archive/theirs/7")
    with pytest.raises(LockBusy, match=r"smithi003 for /archive/r/1 .*already-locked"):
        inv.lock(["smithi004", "smithi001", "smithi002", "smithi003"], "/archive/r/1")
    assert server.locked_nodes() == {
        "smithi001": (US, "/archive/r/1"),
        "smithi003": ("someone@else", "/archive/theirs/7"),
    }
    lock_calls = [p for m, p in server.requests if m == "PUT" and p.endswith("/lock")]
    # the first lock; then smithi001 (ours already) is skipped, the others are sent
    # at once, smithi003 is refused, and the rollback unlocks smithi002 and smithi004
    assert lock_calls[0] == "/nodes/smithi001/lock"
    assert sorted(lock_calls[1:]) == sorted(
        f"/nodes/smithi00{n}/lock" for n in (2, 3, 4, 2, 4)
    )


# -- the server stops answering mid-lock -----------------------------------------------


@pytest.mark.parametrize("mode", ["close", "hang"])
def test_outage_mid_lock_leaves_no_partial_lock_once_paddles_is_back(
    server: FakePaddles, mode: str
) -> None:
    server.stall_mode, server.hang_s = mode, 1.0
    server.stall_after_locks = 2  # the third lock call is applied, then nothing answers
    inv = inventory(server, timeout=0.3)
    with pytest.raises(BackendUnavailable, match="cannot reach paddles"):
        inv.lock(["smithi001", "smithi002", "smithi003", "smithi004"], "/archive/r/1")
    # the locks are sent at once: which three were applied is up to the race
    locked = set(server.locked_nodes())
    assert len(locked) == 3 and locked < {"smithi001", "smithi002", "smithi003", "smithi004"}
    assert list(inv.orphans()) == ["/archive/r/1"]
    server.unstall()
    inv.new_round()  # the next tick: paddles is asked again
    inv.unlock(["mira001"], "/archive/other")  # any later call releases the leftovers first
    assert server.locked_nodes() == {}
    assert list(inv.orphans()) == []


def test_outage_blocks_new_locks_until_leftovers_are_released(server: FakePaddles) -> None:
    server.stall_after_locks = 0
    inv = inventory(server, timeout=0.3)
    with pytest.raises(BackendUnavailable):
        inv.lock(["smithi001", "smithi002"], "/archive/r/1")
    with pytest.raises(BackendUnavailable):
        inv.lock(["smithi003"], "/archive/r/2")
    server.unstall()
    inv.new_round()
    assert [n.name for n in inv.lock(["smithi003"], "/archive/r/2")] == ["smithi003"]
    assert server.locked_nodes() == {"smithi003": (US, "/archive/r/2")}


def test_a_dropped_lock_call_is_retried_and_succeeds(server: FakePaddles) -> None:
    server.stall_after_locks = 1
    server.stall_requests = 0  # only the second lock call is dropped (after being applied)
    got = inventory(server, attempts=3).lock(["smithi001", "smithi002"], "/archive/r/1")
    assert [n.name for n in got] == ["smithi001", "smithi002"]
    lock_puts = [p for m, p in server.requests if m == "PUT" and p.endswith("/lock")]
    # sent at once: whichever the server counted second was dropped, then retried
    assert sorted(lock_puts[:2]) == ["/nodes/smithi001/lock", "/nodes/smithi002/lock"]
    assert len(lock_puts) == 3 and lock_puts[2] in lock_puts[:2]
    assert set(server.locked_nodes()) == {"smithi001", "smithi002"}


def test_lock_many_is_not_retried_blindly(server: FakePaddles) -> None:
    server.stall_after_locks = 0
    server.stall_requests = 0  # the lock_many is applied but its answer is lost
    inv = inventory(server, lock_many=True, attempts=3)
    with pytest.raises(BackendUnavailable):
        inv.lock(["smithi001", "smithi002"], "/archive/r/1")
    assert [p for _, p in server.requests].count("/nodes/lock_many/") == 1
    assert server.locked_nodes() == {}  # the rollback found and released what it took
    assert list(inv.orphans()) == []


def test_unreachable_paddles_names_the_url_and_the_setting() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    inv = PaddlesInventory(paddles_client(url, 0.5, 2), US)
    with pytest.raises(BackendUnavailable, match=r"cannot reach paddles at .*set lock_server"):
        inv.nodes()
    # the breaker is open: the next call fails at once, without a request or a back-off
    with pytest.raises(BackendUnavailable, match="not sent, asked again next tick"):
        inv.lock(["smithi001"], "/archive/r/1")
    inv.new_round()  # next tick: one probe, one attempt
    with pytest.raises(BackendUnavailable, match="1 attempt"):
        inv.lock(["smithi001"], "/archive/r/1")


def test_a_url_that_is_not_http_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="lock_server"):
        paddles_client("paddles.example:8080")


# -- HTML pages, unlock semantics --------------------------------------------------------


def test_html_404_is_a_clear_error_not_a_json_traceback(server: FakePaddles) -> None:
    client = paddles_client(server.url)
    with pytest.raises(
        PaddlesError, match=r"HTTP 404: an HTML/text page instead of JSON for /bogus/"
    ):
        client.request("GET", "/bogus/")
    wrong_base = PaddlesInventory(paddles_client(server.url + "/not-paddles"), US)
    with pytest.raises(BackendUnavailable, match="is lock_server the paddles base URL"):
        wrong_base.nodes()


def test_html_404_for_a_missing_node_is_not_found(server: FakePaddles) -> None:
    server.html_node_404 = True
    with pytest.raises(NotFound, match="nosuch"):
        inventory(server).unlock(["nosuch"], "/archive/r/1")


def test_unlock_checks_the_description_itself(server: FakePaddles) -> None:
    inv = inventory(server)
    inv.lock(["smithi001"], "/archive/r/1")
    before = len(server.requests)
    with pytest.raises(Conflict, match="/archive/r/1"):
        inv.unlock(["smithi001"], "/archive/r/2")
    unlock_calls = [p for m, p in server.requests[before:] if m == "PUT"]
    assert unlock_calls == []  # refused before asking paddles, whatever its version checks
    assert server.locked_nodes() == {"smithi001": (US, "/archive/r/1")}


def test_unlock_tolerates_a_node_unlocked_meanwhile(server: FakePaddles) -> None:
    inv = inventory(server)
    inv.lock(["smithi001", "smithi002"], "/archive/r/1")
    server.nodes["smithi002"].update(locked=False, locked_by=None, description=None)
    inv.unlock(["smithi001", "smithi002"], "/archive/r/1")
    assert server.locked_nodes() == {}


def test_unlock_never_uses_the_non_atomic_unlock_many(server: FakePaddles) -> None:
    client = paddles_client(server.url)
    inv = inventory(server)
    inv.lock(["smithi001", "smithi002"], "/archive/r/1")
    inv.lock(["smithi003"], "/home/bob", "bob@desk")
    # What the adapter avoids: unlock_many commits node by node and stops half-way.
    with pytest.raises(PaddlesError, match=r"HTTP 403.*locked_by values must match"):
        client.request(
            "POST",
            "/nodes/unlock_many/",
            {"names": ["smithi001", "smithi003", "smithi002"], "locked_by": US},
        )
    assert set(server.locked_nodes()) == {"smithi002", "smithi003"}
    inv.unlock(["smithi002"], "/archive/r/1")
    assert server.locked_nodes() == {"smithi003": ("bob@desk", "/home/bob")}
    adapter_paths = [p for _, p in server.requests]
    assert adapter_paths.count("/nodes/unlock_many/") == 1  # only the test's own call
