"""Plant known bugs, one at a time, in a throwaway copy of the tree; check the tests catch them.

Usage:
    python scripts/plant_bugs.py --list
    python scripts/plant_bugs.py [BUG ...] [--repeat N] [--keep]

For each bug (all by default): copy the working tree (uncommitted changes
included; no .git) to a temporary directory, replace one exact piece of
source text there, and run each of the bug's test selections on its own in
the copy (`python -m pytest` from the copy, so the copy's `optialloc` is the
one imported: checked). A selection that fails has caught the bug. Property
tests are run `--repeat` times, each with a fresh Hypothesis database (a
failing example saved by one run would otherwise be replayed by the next),
and the count of runs that caught the bug is printed. The shared checkout is
never modified; the copy is deleted unless `--keep`.

A bug whose source text is no longer found is reported as STALE (the code
moved): update its entry in BUGS. Add a bug by adding an entry. Results of
the runs so far are in docs/testing.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SKIP = {".git", ".hypothesis", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}


@dataclass(frozen=True)
class Bug:
    """One planted bug: in `path`, `old` (found exactly once) becomes `new`."""

    name: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest selections, each run on its own
    properties: bool = False  # Hypothesis tests: run --repeat times


BUGS = (
    Bug(
        "tombstone",
        "reconcile skips the tombstone: a launch with no pid file is returned to the queue",
        "optialloc/dispatch/reconcile.py",
        'abandon = getattr(d.runner, "abandon", None)',
        "abandon = None",
        ("tests/test_reconcile_race.py",),
    ),
    Bug(
        "solver-cap+1",
        "the solver's fairness cap is one node too high",
        "optialloc/solver/lab.py",
        "return max(math.ceil(share * base - 1e-9), largest_job)",
        "return max(math.ceil(share * base - 1e-9) + 1, largest_job)",
        ("tests/test_solver_properties.py::test_every_plan_validates",),
        properties=True,
    ),
    Bug(
        "solver-cap-1",
        "the solver's fairness cap is one node too low (never below the largest job)",
        "optialloc/solver/lab.py",
        "return max(math.ceil(share * base - 1e-9), largest_job)",
        "return max(math.ceil(share * base - 1e-9) - 1, largest_job)",
        ("tests/test_solver_properties.py::test_tiny_instances_reach_brute_force_optimum",),
        properties=True,
    ),
    Bug(
        "validator-cap+1",
        "the validator's fairness share is one node too high",
        "optialloc/check/fairness.py",
        "return math.ceil(share * base[machine_type] - 1e-9)",
        "return math.ceil(share * base[machine_type] - 1e-9) + 1",
        (
            "tests/test_solver_properties.py::test_tiny_instances_reach_brute_force_optimum",
            "tests/test_validator_rules.py",
            "tests/test_validator.py",
        ),
        properties=True,
    ),
    Bug(
        "validator-cap-1",
        "the validator's fairness share is one node too low",
        "optialloc/check/fairness.py",
        "return math.ceil(share * base[machine_type] - 1e-9)",
        "return math.ceil(share * base[machine_type] - 1e-9) - 1",
        (
            "tests/test_solver_properties.py::test_every_plan_validates",
            "tests/test_validator_rules.py",
            "tests/test_validator.py",
        ),
        properties=True,
    ),
    Bug(
        "largest-job-cap",
        "the validator forgets that a cap is never below the name's largest job",
        "optialloc/check/fairness.py",
        "return max(share_of(machine_type), largest[(name, machine_type)])",
        "return share_of(machine_type)",
        ("tests/test_validator_rules.py", "tests/test_validator.py"),
    ),
    Bug(
        "down-node",
        "the validator accepts a down node",
        "optialloc/check/state.py",
        "if not node.up:",
        "if False:",
        ("tests/test_validator_rules.py", "tests/test_validator.py"),
    ),
    Bug(
        "paused-tube",
        "the validator accepts a start from a paused tube",
        "optialloc/check/validator.py",
        "if job.tube in self.s.paused_tubes:",
        "if False:",
        ("tests/test_validator_rules.py", "tests/test_validator.py"),
    ),
    Bug(
        "last-in-suite",
        "the validator accepts last_in_suite while its run still has jobs",
        "optialloc/check/validator.py",
        "elif job.last_in_suite and self.pending_runs[job.run] > 0:",
        "elif False:",
        ("tests/test_validator_rules.py", "tests/test_validator.py"),
    ),
    Bug(
        "mixed-types",
        "the validator accepts a job on nodes of two machine types",
        "optialloc/check/validator.py",
        "if len(types) > 1:",
        "if False:",
        ("tests/test_validator_rules.py", "tests/test_validator.py"),
    ),
    Bug(
        "capacity",
        "the validator skips the per-type capacity count",
        "optialloc/check/validator.py",
        "if count > free[machine_type]:",
        "if False:",
        ("tests/test_validator_rules.py", "tests/test_validator.py"),
    ),
    Bug(
        "objective",
        "the validator accepts any reported objective",
        "optialloc/check/validator.py",
        "if abs(expected - reported) > 1e-6 * max(1.0, abs(expected)):",
        "if False:",
        ("tests/test_validator_rules.py", "tests/test_validator.py"),
    ),
    Bug(
        "hold-for-started",
        "the validator accepts a hold for a job that starts in the same plan",
        "optialloc/check/holds.py",
        "if hold.for_job_id in self.started:",
        "if False:",
        ("tests/test_validator_rules.py", "tests/test_validator.py"),
    ),
)


def copy_tree(dest: Path) -> None:
    shutil.copytree(REPO, dest, ignore=lambda _d, names: [n for n in names if n in SKIP])


def plant(root: Path, bug: Bug) -> bool:
    path = root / bug.path
    try:
        text = path.read_text()
    except FileNotFoundError:
        return False
    if text.count(bug.old) != 1:
        return False
    path.write_text(text.replace(bug.old, bug.new))
    return True


def run_selection(root: Path, selection: str) -> tuple[bool, str]:
    """(caught, last line): runs `selection` in the copy; caught = the tests failed."""
    shutil.rmtree(root / ".hypothesis", ignore_errors=True)
    env = dict(os.environ)
    env.pop("OPTIALLOC_CRASH_AT", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", selection],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else proc.stderr.strip()[-200:]
    if proc.returncode not in (0, 1):
        return False, f"ERROR (pytest exit {proc.returncode}): {last}"
    return proc.returncode == 1, last


def imported_from(root: Path) -> str:
    return subprocess.run(
        [sys.executable, "-c", "import optialloc; print(optialloc.__file__)"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bugs", nargs="*", help="bug names (default: all); see --list")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each property selection")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the copies (paths printed)")
    args = parser.parse_args()
    if args.list:
        for bug in BUGS:
            print(f"{bug.name:18s} {bug.what}")
        return 0
    chosen = [b for b in BUGS if not args.bugs or b.name in args.bugs]
    unknown = set(args.bugs) - {b.name for b in BUGS}
    if unknown:
        parser.error(f"unknown bug(s) {', '.join(sorted(unknown))}: see --list")
    missed = 0
    for bug in chosen:
        root = Path(tempfile.mkdtemp(prefix=f"optialloc-bug-{bug.name}-"))
        try:
            copy_tree(root / "tree")
            tree = root / "tree"
            if not plant(tree, bug):
                print(f"{bug.name}: STALE: {bug.old!r} not found once in {bug.path}")
                missed += 1
                continue
            where = imported_from(tree)
            if not where.startswith(str(tree)):
                print(f"{bug.name}: the copy imports optialloc from {where}: cannot test")
                return 2
            print(f"{bug.name}: {bug.what}", flush=True)
            for selection in bug.tests:
                runs = args.repeat if bug.properties and "::test_" in selection else 1
                caught, started = 0, time.monotonic()
                for _ in range(runs):
                    hit, last = run_selection(tree, selection)
                    caught += hit
                print(
                    f"  {selection}: caught in {caught} of {runs} run(s) "
                    f"({time.monotonic() - started:.0f} s; last: {last})",
                    flush=True,
                )
                missed += caught == 0
        finally:
            if args.keep:
                print(f"  copy kept in {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
