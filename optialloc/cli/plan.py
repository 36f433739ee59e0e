"""`optialloc plan --dry-run`: show what one scheduling tick would do, changing nothing.

Reads a snapshot file (docs/snapshot-format.md), solves it with a policy
model, checks the Plan with the independent validator, and prints starts,
waiting jobs with their reasons, held nodes and the solver's figures, as
tables or as one JSON object. Exit codes: 0 the plan is valid, 3 a bad
snapshot or policy file (one stderr line naming the field), 4 the validator
rejected the plan (its violations are printed). Committing plans is
`optialloc serve`'s job. Without --snapshot the live lab is read through the
same config as `serve` (queue, inventory, the journal's running jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

from optialloc.cli.plan_report import format_plan, plan_to_dict
from optialloc.config import load_config
from optialloc.domain import Plan, Snapshot
from optialloc.errors import ExitCode
from optialloc.policy import Policy, load_policy
from optialloc.snapshots.io import dump_snapshot, load_snapshot_document

EXAMPLES = """\
examples:
  optialloc plan --dry-run --snapshot fixtures/snapshots/small.yaml
  optialloc plan --dry-run --snapshot fixtures/snapshots/starvation.yaml \\
      --policy models/throughput.yaml
  optialloc plan --dry-run --snapshot fixtures/snapshots/sepia.gen.yaml --limit 20
  optialloc plan --dry-run --snapshot fixtures/snapshots/small.yaml --json | jq '.waiting[0]'
  optialloc plan --dry-run --snapshot fixtures/snapshots/sepia.gen.yaml \\
      --dump-snapshot /tmp/sepia.yaml

what it touches: nothing in the lab. With --snapshot only that file is read. On the
live lab (no --snapshot) it reads the config's queue, lock server and optialloc's
state dir (where it keeps one hint: the job id the next peek walk starts from):
with `queue_backend: beanstalk` beanstalkd is read by `peek` and `stats-*` only (no
reserve, delete, bury, kick or priority change; jobs stay ready, in order), and
paddles by GETs; nothing is reported to the results server. Safe beside
teuthology's own dispatchers. Only `optialloc serve` moves jobs.

exit codes: 0 valid plan, 2 usage, 3 bad snapshot or policy file, 4 plan rejected by the validator.
A snapshot file may also hold fixture-generator parameters (a `generator:` key):
the lab is then generated from them (see docs/snapshot-format.md).
"""

SolveFn = Callable[[Snapshot, Policy], Plan]
ValidateFn = Callable[[Snapshot, Policy, Plan], list[str]]


@dataclass(frozen=True)
class DryRun:
    """One solved and checked tick: the plan and the validator's violations (empty: valid)."""

    plan: Plan
    violations: list[str]


def dry_run(
    snapshot: Snapshot,
    policy: Policy,
    *,
    solve_fn: SolveFn | None = None,
    validate_fn: ValidateFn | None = None,
) -> DryRun:
    """Solve `snapshot` with `policy` and validate the plan; changes nothing anywhere.

    `solve_fn` / `validate_fn` default to the real solver and validator (imported
    here because OR-Tools is slow to import and other subcommands need it not).
    """
    if solve_fn is None:
        from optialloc.solver import solve

        solve_fn = solve
    if validate_fn is None:
        from optialloc.check.validator import validate_plan

        validate_fn = validate_plan
    plan = solve_fn(snapshot, policy)
    return DryRun(plan=plan, violations=list(validate_fn(snapshot, policy, plan)))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="show what one scheduling tick would start, hold and leave waiting (dry run)",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="required: solve and print, change nothing (`optialloc serve` commits plans)",
    )
    parser.add_argument(
        "--snapshot",
        metavar="FILE",
        help="snapshot file to plan for (default: the live lab, through --config)",
    )
    parser.add_argument(
        "--policy",
        metavar="FILE",
        help="policy model: a shipped name (default, throughput) or a YAML file "
        "(default: the config's `policy`, else the shipped default)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object instead of tables"
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=50,
        metavar="N",
        help="show at most N rows per table (default 50; 0: all); --json is never cut",
    )
    parser.add_argument(
        "--dump-snapshot",
        metavar="FILE",
        help="also write the snapshot that was planned for to FILE (YAML; a .json path: JSON)",
    )
    parser.set_defaults(func=handle)


def _emit(text: str) -> None:
    """Print to stdout; a reader that went away early (`| head`) is not an error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def handle(args: argparse.Namespace) -> int:
    """Run `optialloc plan`; see the module docstring for the exit codes."""
    if not args.dry_run:
        print(
            "optialloc plan: only --dry-run is supported: it shows a tick and changes nothing; "
            "`optialloc serve` is what commits plans (locks nodes and starts jobs)",
            file=sys.stderr,
        )
        return int(ExitCode.USAGE)
    if args.limit < 0:
        print("optialloc plan: --limit must be >= 0 (0 shows every row)", file=sys.stderr)
        return int(ExitCode.USAGE)
    config = load_config(args.config)
    if args.snapshot is None:
        # The live lab, read through the same config as `serve` (changes nothing).
        from optialloc.dispatch.snapshotter import live_snapshot

        snapshot, runtimes, source = live_snapshot(config), None, "the live lab"
    else:
        document = load_snapshot_document(args.snapshot)
        snapshot, runtimes, source = document.snapshot, document.runtimes, args.snapshot
    policy = load_policy(args.policy or config.policy_path)
    if args.dump_snapshot:
        dump_snapshot(
            snapshot,
            args.dump_snapshot,
            runtimes=runtimes,
            header=f"written by optialloc plan --dry-run from {source}",
        )
        print(f"optialloc plan: snapshot written to {args.dump_snapshot}", file=sys.stderr)

    result = dry_run(snapshot, policy)
    if args.json:
        out = plan_to_dict(result.plan, snapshot)
        out["policy"] = policy.name
        out["valid"] = not result.violations
        out["violations"] = result.violations
        _emit(json.dumps(out, indent=1))
    else:
        text = format_plan(result.plan, snapshot, limit=args.limit or None)
        _emit(f"policy: {policy.name}\n{text}")
    if result.violations:
        print(
            f"optialloc plan: the validator REJECTED this plan "
            f"({len(result.violations)} violation(s)):",
            file=sys.stderr,
        )
        for violation in result.violations:
            print(f"  {violation}", file=sys.stderr)
        return int(ExitCode.PLAN_REJECTED)
    return int(ExitCode.OK)
