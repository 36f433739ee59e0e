"""Every example in every `--help` text and in the README runs, so none can rot.

Examples are collected programmatically: every parser and sub-parser of
`optialloc.cli.build_parser()` is walked and the command lines under its
`examples:` heading are taken (continuation lines joined); the README's
indented command lines that start with `optialloc` are taken too. A new
example is therefore tested without anyone listing it here.

Each help text's (and the README's) examples run in order, through bash, in a
scratch directory holding links to the checkout's `fixtures/` and `models/`,
against a fresh state dir seeded with a run `my-run` of 8 queued jobs (ids
1-8, jobs 5 and 6 buried), so that the examples' job ids and run name exist.
Lines starting with `#` are comments, not examples. Absolute `/tmp/` paths in
examples are redirected into the test's temp directory, port 8080 to a free
loopback port, and the scratch directory holds a `lab.yaml` config (the name
examples give an admin's config) on the seeded state. A server example
(`web`, or `serve` without `--exit-on-empty-queue`) passes when it answers
HTTP on its port (web) or is still running after its first tick (serve); it is
then stopped with SIGTERM. An example that reads no state (`demo` without
`--state-dir`, `whatif`, `plan --snapshot`, `python -m ...`) and appears in
several texts runs once. The one rewrite of arguments is
`SHRINK` below (the Lublin windows take minutes; the test runs the same
command on one short window of the same trace), and the test checks that every
entry of it is still used.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import REPO, free_port

from optialloc.cli import build_parser

pytestmark = pytest.mark.slow

LUBLIN = Path("/work/shared/data/traces/lublin_256.swf")

#: substring of an example -> (replacement, why). Each must match some example.
SHRINK = {
    "--window lublin": ("--window 0:64", "the ten 1024-job Lublin windows take minutes"),
}


def _walk(parser: argparse.ArgumentParser, prog: str) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _walk(sub, f"{prog} {name}")
    return found


def examples_in(text: str) -> list[str]:
    """The command lines under `examples:` in a help text (comments skipped, `\\` joined)."""
    commands: list[str] = []
    inside = False
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line == "examples:":
            inside = True
            continue
        if not inside:
            continue
        if not line and not pending:
            inside = False  # the block ends at the first blank line
            continue
        if pending:
            pending += " " + line
        elif line.startswith(("optialloc ", "python -m ")):
            pending = line
        else:
            continue
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        commands.append(re.sub(r"\s{2,}#.*$", "", pending).strip())
        pending = ""
    return commands


def help_examples() -> dict[str, list[str]]:
    """{prog: examples} for every parser whose help has an examples block."""
    out = {}
    for prog, parser in _walk(build_parser(), "optialloc"):
        found = examples_in(parser.format_help())
        if found:
            out[prog] = found
    return out


def readme_examples() -> list[str]:
    """The README's indented command lines that run optialloc (`pip ... && optialloc demo` too)."""
    commands: list[str] = []
    pending = ""
    for raw in (REPO / "README.md").read_text().splitlines():
        if not raw.startswith("    ") and not pending:
            continue
        line = raw.strip()
        pending = f"{pending} {line}".strip() if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        for part in pending.split(" && "):
            part = re.sub(r"\s{2,}#.*$", "", part).strip()
            if part.startswith("optialloc "):
                commands.append(part)
        pending = ""
    return commands


def test_every_command_and_action_has_an_example() -> None:
    found = help_examples()
    for prog, _parser in _walk(build_parser(), "optialloc"):
        assert found.get(prog), f"`{prog} --help` shows no example"


def test_collectors_find_what_they_should() -> None:
    text = (
        "usage\n\nexamples:\n  optialloc a \\\n      --b c  # note\n  # comment\n  optialloc d\n\nx"
    )
    assert examples_in(text) == ["optialloc a --b c", "optialloc d"]
    assert "optialloc demo" in readme_examples()


def _seed(state: Path, work: Path, env: dict[str, str]) -> None:
    """Queue run `my-run`: 8 jobs (ids 1-8) of fixtures/jobs/rados-basic.yaml; bury 5 and 6."""
    subprocess.run(
        [
            sys.executable, "-m", "optialloc", "schedule", "fixtures/jobs/rados-basic.yaml",
            "--name", "my-run", "--machine-type", "smithi", "-N", "8",
        ],
        cwd=work, env=env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    from optialloc.config import Config
    from optialloc.queue import open_queue

    queue = open_queue(Config(state_dir=str(state)))
    try:
        for job_id in ("5", "6"):
            queue.bury(job_id, "buried by the examples test (kick examples)")
    finally:
        queue.close()


def _subcommand(command: str) -> list[str]:
    """The words after `optialloc` and its global options (`--config FILE`, `-v`)."""
    words = shlex.split(command)[1:]
    while words and words[0].startswith("-"):
        words = words[2:] if words[0] == "--config" else words[1:]
    return words


def _stateless(command: str) -> bool:
    """True for an example whose outcome does not depend on the state dir."""
    if command.startswith("python -m "):
        return True
    words = _subcommand(command)
    if not command.startswith("optialloc ") or not words:
        return False
    if words[0] in ("demo", "whatif"):
        return "--state-dir" not in words
    return words[0] == "plan" and "--snapshot" in words and "--dump-snapshot" not in words


#: stateless examples already run (by whichever test met them first)
_DONE: set[str] = set()


def _is_server(command: str) -> bool:
    words = _subcommand(command)
    if not command.startswith("optialloc ") or not words:
        return False
    return words[0] == "web" or (words[0] == "serve" and "--exit-on-empty-queue" not in words)


def _run_server(command: str, port: int, work: Path, env: dict[str, str]) -> None:
    """Start a server example, check it answers (web) or keeps running (serve), stop it."""
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"], cwd=work, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        answered = False
        while time.monotonic() < deadline and proc.poll() is None and not answered:
            if _subcommand(command)[0] == "serve":
                time.sleep(3)  # a few ticks
                answered = proc.poll() is None
                break
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    pass
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
                    answered = reply.status == 200
            except OSError:
                time.sleep(0.2)
        assert answered, f"{command}: did not serve (rc {proc.poll()})"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
    assert "Traceback" not in err, f"{command}\n{err[-3000:]}"


def _scratch(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "work"
    work.mkdir()
    port = free_port()
    (work / "lab.yaml").write_text(
        f"state_dir: {tmp_path / 'state'}\nhttp_port: {port}\ntick_seconds: 1\n"
    )
    for name in ("fixtures", "models"):
        (work / name).symlink_to(REPO / name)
    if LUBLIN.exists():
        (work / "lublin_256.swf").symlink_to(LUBLIN)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "optialloc").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m optialloc "$@"\n')
    (bin_dir / "optialloc").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPTIALLOC_")}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        OPTIALLOC_STATE_DIR=str(tmp_path / "state"),
        XDG_STATE_HOME=str(tmp_path / "xdg"),
        TMPDIR=str(tmp_path / "tmp"),
        PYTHONPATH=str(REPO),
        EXAMPLES_PORT=str(port),
    )
    (tmp_path / "tmp").mkdir()
    return work, env


def _run_all(tmp_path: Path, commands: list[str]) -> None:
    work, env = _scratch(tmp_path)
    _seed(tmp_path / "state", work, env)
    for command in commands:
        if "lublin_256.swf" in command and not LUBLIN.exists():
            pytest.skip(f"{LUBLIN} (RLScheduler's Lublin trace) is not on this machine")
        for needle, (replacement, _why) in SHRINK.items():
            if needle in command:
                command = command.replace(needle, replacement)
        command = command.replace("/tmp/", f"{tmp_path}/tmp/")
        command = command.replace("8080", env["EXAMPLES_PORT"])
        if _stateless(command):
            if command in _DONE:
                continue
            _DONE.add(command)
        if _is_server(command):
            _run_server(command, int(env["EXAMPLES_PORT"]), work, env)
            continue
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=work, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, f"{command}\nrc {done.returncode}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, f"{command}\n{done.stderr[-3000:]}"


HELP = help_examples()


@pytest.mark.parametrize("prog", sorted(HELP))
def test_help_examples_run(prog: str, tmp_path: Path) -> None:
    _run_all(tmp_path, HELP[prog])


def test_readme_examples_run(tmp_path: Path) -> None:
    _run_all(tmp_path, readme_examples())


def test_every_rewrite_is_still_needed() -> None:
    """A SHRINK entry that no example uses any more is stale: remove it."""
    every = [c for cs in HELP.values() for c in cs] + readme_examples()
    for needle in SHRINK:
        assert any(needle in c for c in every), f"SHRINK entry {needle!r} matches no example"


def test_seeded_state_has_what_the_examples_name(tmp_path: Path) -> None:
    work, env = _scratch(tmp_path)
    _seed(tmp_path / "state", work, env)
    listed = subprocess.run(
        [sys.executable, "-m", "optialloc", "queue", "list", "--json"],
        cwd=work, env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    ids = {r["job_id"] for r in yaml.safe_load(listed.stdout)}
    assert ids == {"1", "2", "3", "4", "7", "8"}
    shutil.rmtree(tmp_path / "state")
