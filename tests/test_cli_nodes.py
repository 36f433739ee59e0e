"""`optialloc nodes ...` as real subprocesses: embedded (temp state dir) and paddles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO, free_port
from inventory_support import fill_paddles
from paddles_server import FakePaddles

from optialloc.errors import ExitCode


class Cli:
    """Runs `python -m optialloc --config <file> nodes ...` and keeps the result."""

    def __init__(self, config: Path) -> None:
        self.config = config

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIALLOC_")}
        return subprocess.run(
            [sys.executable, "-m", "optialloc", "--config", str(self.config), "nodes", *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=120,
        )

    def json(self, *args: str) -> object:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def write_config(tmp_path: Path, **settings: object) -> Path:
    config = tmp_path / "optialloc.yaml"
    values = {"state_dir": str(tmp_path / "state"), "locked_by": "optialloc@test", **settings}
    config.write_text(yaml.safe_dump(values))
    return config


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(write_config(tmp_path))


def states(cli: Cli) -> dict[str, tuple[bool, bool, str | None]]:
    nodes = cli.json("list")
    assert isinstance(nodes, list)
    return {n["name"]: (n["up"], n["locked"], n["description"]) for n in nodes}


def test_list_seeds_the_demo_lab(cli: Cli) -> None:
    done = cli("list")
    assert done.returncode == 0, done.stderr
    assert "14 node(s): 13 free, 0 locked, 1 down" in done.stdout
    assert "smithi001  smithi  free" in done.stdout
    mira = cli.json("list", "--machine-type", "mira")
    assert isinstance(mira, list) and [n["name"] for n in mira] == [
        f"mira00{i}" for i in range(1, 5)
    ]


def test_lock_usage_unlock(cli: Cli) -> None:
    done = cli("lock", "smithi001", "smithi002", "--for", "/archive/r/1", "--owner", "alice")
    assert done.returncode == 0, done.stderr
    assert "locked 2 node(s) as optialloc@test for /archive/r/1" in done.stdout
    busy = cli("lock", "smithi003", "smithi002", "--for", "/archive/r/2")
    assert busy.returncode == ExitCode.CONFLICT, busy.stderr
    assert "smithi002 is locked by optialloc@test for /archive/r/1" in busy.stderr
    assert states(cli)["smithi003"] == (True, False, None)  # all or nothing
    assert cli.json("usage") == [{"owner": "alice", "machine_type": "smithi", "locked": 2}]
    table = cli("usage")
    assert "alice  2       2" in table.stdout, table.stdout + table.stderr
    assert "2 locked node(s) in total" in table.stdout
    other = cli("unlock", "smithi001", "--for", "/archive/r/2")
    assert other.returncode == ExitCode.CONFLICT, other.stderr
    assert "not unlocking 1 node(s)" in other.stderr
    done = cli("unlock", "smithi001", "smithi002")
    assert done.returncode == 0, done.stderr
    assert not any(locked for _, locked, _ in states(cli).values())


def test_unlock_as_another_locker_is_refused_without_locked_by(cli: Cli) -> None:
    assert cli("lock", "mira001", "--for", "/x", "--locked-by", "alice@desk").returncode == 0
    refused = cli("unlock", "mira001")
    assert refused.returncode == ExitCode.CONFLICT and "alice@desk" in refused.stderr
    assert cli("unlock", "mira001", "--locked-by", "alice@desk").returncode == 0


def test_down_up_and_unknown_nodes(cli: Cli) -> None:
    assert cli("down", "smithi004").returncode == 0
    assert states(cli)["smithi004"] == (False, False, None)
    down = cli("lock", "smithi004", "--for", "/archive/r/1")
    assert down.returncode == ExitCode.CONFLICT and "smithi004 is down" in down.stderr
    assert cli("up", "smithi004").returncode == 0
    assert cli("lock", "smithi004", "--for", "/archive/r/1").returncode == 0
    missing = cli("down", "smithi004", "nosuch")
    assert missing.returncode == ExitCode.NOT_FOUND and "no node named nosuch" in missing.stderr
    assert states(cli)["smithi004"][0] is True  # nothing changed


def test_import_good_and_bad_labs(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "nodes:\n- {name: extra001, machine_type: smithi}\n- {name: extra002}\n"
        "- {name: extra001, machine_type: smithi, colour: red}\n"
    )
    done = cli("import", str(bad))
    assert done.returncode == ExitCode.BAD_INPUT
    assert "line 3 (node extra002): node has no machine_type" in done.stderr
    assert "line 4 (node extra001): unknown key 'colour'" in done.stderr
    assert "duplicate node name extra001 (first defined on line 2)" in done.stderr
    assert not any(name.startswith("extra") for name in states(cli))
    good = cli("import", "fixtures/labs/sepia.yaml")
    assert good.returncode == 0, good.stderr
    assert "326 node(s) added, 9 updated, 5 unchanged (locks untouched)" in good.stdout
    assert len(states(cli)) == 340


def test_help_has_examples(cli: Cli) -> None:
    done = cli("--help")
    assert done.returncode == 0 and "optialloc nodes lock smithi001 smithi002 --for" in done.stdout


@pytest.fixture
def paddles() -> Iterator[FakePaddles]:
    with FakePaddles() as server:
        fill_paddles(server)
        yield server


def test_the_same_commands_on_paddles(paddles: FakePaddles, tmp_path: Path) -> None:
    cli = Cli(write_config(tmp_path, lock_server=paddles.url))
    assert len(states(cli)) == 9
    assert cli("lock", "smithi001", "mira001", "--for", "/archive/r/1").returncode == 0
    assert paddles.locked_nodes() == {
        "smithi001": ("optialloc@test", "/archive/r/1"),
        "mira001": ("optialloc@test", "/archive/r/1"),
    }
    assert cli.json("usage") == [
        {"owner": "optialloc@test", "machine_type": "mira", "locked": 1},
        {"owner": "optialloc@test", "machine_type": "smithi", "locked": 1},
    ]
    assert cli("unlock", "smithi001", "mira001", "--for", "/archive/r/1").returncode == 0
    assert paddles.locked_nodes() == {}
    refused = cli("import", "fixtures/labs/demo.yaml")
    assert refused.returncode == ExitCode.BAD_INPUT and "lock_server" in refused.stderr


def test_unreachable_paddles_exits_unavailable(tmp_path: Path) -> None:
    cli = Cli(write_config(tmp_path, lock_server=f"http://127.0.0.1:{free_port()}"))
    done = cli("list")
    assert done.returncode == ExitCode.UNAVAILABLE
    assert "cannot reach paddles" in done.stderr and "set lock_server" in done.stderr
