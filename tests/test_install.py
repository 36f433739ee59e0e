"""A plain install works anywhere: build the wheel and sdist, install the wheel, run it.

As a lab admin would: `python -m build` makes the sdist and, from it, the
wheel (so the sdist is complete too); the wheel goes into a fresh venv
(`--system-site-packages` only so ortools and friends are not downloaded
again; the test checks that the optialloc imported is the wheel's, not this
checkout's); then, from an empty directory, `optialloc demo`,
`plan --dry-run --snapshot`, `whatif` on the shipped demo workload and
`serve --exit-on-empty-queue` must all succeed. Nothing of the checkout
(models/, fixtures/) is reachable from there. `pipx install` of the same wheel
gets a shorter check: a shipped policy by name and the shipped demo lab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO

pytestmark = pytest.mark.slow


def _source_copy(dest: Path) -> None:
    """The checkout's tracked and new files (not ignored ones, not tests/docs) into `dest`."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    for name in listed.stdout.splitlines():
        if name.startswith(("tests/", "docs/", ".ci/")):
            continue
        source = REPO / name
        if not source.is_file():
            continue  # listed but deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the sdist and the wheel (from the sdist) once; check what the wheel holds."""
    tmp_path = tmp_path_factory.mktemp("build")
    source, dist = tmp_path / "src", tmp_path / "dist"
    _source_copy(source)
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("optialloc-*.whl")
    (sdist,) = dist.glob("optialloc-*.tar.gz")
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "optialloc/data/models/default.yaml",
        "optialloc/data/models/throughput.yaml",
        "optialloc/data/labs/demo.yaml",
        "optialloc/data/workloads/demo.jsonl",
        "optialloc/py.typed",
    ):
        assert shipped in names, f"{shipped} missing from {wheel.name}"
    assert sdist.stat().st_size > 0
    return wheel


def _env(tmp_path: Path, bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTIALLOC_", "PYTHON"))}
    env.update(
        HOME=str(tmp_path / "home"), XDG_STATE_HOME=str(tmp_path / "xdg"),
        TMPDIR=str(tmp_path), PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
    )  # fmt: skip
    return env


def test_wheel_installs_and_runs_from_an_empty_directory(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
        check=True, timeout=120,
    )  # fmt: skip
    python, optialloc = venv / "bin" / "python", venv / "bin" / "optialloc"
    installed = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]

    empty = tmp_path / "empty"
    empty.mkdir()
    env = _env(tmp_path, venv / "bin")

    def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*args], cwd=empty, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert done.returncode == 0, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        return done

    where = run(str(python), "-c", "import optialloc; print(optialloc.__file__)").stdout.strip()
    assert where.startswith(str(venv)), f"imported {where}, not the wheel's copy"

    demo = run(str(optialloc), "demo", "--jobs", "12", "--no-progress")
    assert "demo finished: 12 jobs run (12 passed, 0 failed)" in demo.stdout
    assert "state removed" in demo.stdout
    assert not list(tmp_path.glob("optialloc-demo-*")), "the demo left its temp dir behind"

    snapshot = tmp_path / "snapshot.yaml"
    shutil.copy(FIXTURES / "snapshots" / "small.yaml", snapshot)
    plan = run(str(optialloc), "plan", "--dry-run", "--snapshot", str(snapshot))
    assert plan.stdout.startswith("policy: default")

    whatif = run(str(optialloc), "whatif", "--lab", "demo", "--workload", "demo")
    for column in ("default", "fcfs", "teuthology", "easy"):
        assert column in whatif.stdout

    run(str(optialloc), "schedule", str(FIXTURES / "jobs" / "rados-basic.yaml"),
        "--name", "wheel-run", "--machine-type", "smithi", "--priority", "10")  # fmt: skip
    served = run(str(optialloc), "serve", "--exit-on-empty-queue", "--tick-seconds", "0.5")
    assert "state in " in served.stderr
    assert (tmp_path / "xdg" / "optialloc" / "journal.sqlite").exists()
    assert not (empty / "models").exists() and list(empty.iterdir()) == []


def test_pipx_install_of_the_wheel_runs_from_an_empty_directory(
    wheel: Path, tmp_path: Path
) -> None:
    home = tmp_path / "pipx"
    env = _env(tmp_path, home / "bin")
    env.update(PIPX_HOME=str(home / "home"), PIPX_BIN_DIR=str(home / "bin"))
    env["PIPX_MAN_DIR"] = str(home / "man")
    installed = subprocess.run(
        [sys.executable, "-m", "pipx", "install", "--system-site-packages", str(wheel)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    optialloc = str(home / "bin" / "optialloc")
    snapshot = tmp_path / "snapshot.yaml"
    shutil.copy(FIXTURES / "snapshots" / "small.yaml", snapshot)
    for args in (
        ("plan", "--dry-run", "--snapshot", str(snapshot), "--policy", "throughput"),
        ("nodes", "list", "--machine-type", "gibba"),
    ):
        done = subprocess.run(
            [optialloc, *args], cwd=empty, env=env, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, f"{args}\n{done.stderr[-3000:]}"
    assert "gibba002" in done.stdout
    assert (tmp_path / "xdg" / "optialloc" / "inventory.sqlite").exists()
