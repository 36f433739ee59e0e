"""`optialloc schedule`: queue jobs exactly as `teuthology-schedule` does.

The body is built the way teuthology's `schedule.build_config` builds it
(CLI fields first, then the job YAML on top, so the YAML wins, as in
teuthology; `targets` stripped), dumped with `yaml.safe_dump`, and put with
the body's priority and a ttr of 86400 s into the tube of its machine type
(`multi` for several). So a lab without teuthology can feed optialloc, and
the beanstalkd path sees exactly what teuthology would put there.

Unlike teuthology-schedule, it refuses (exit 3, saying why) what could never
run: an empty job (no roles and no tasks, unless it is a suite's
`last_in_suite` job) and a machine type the inventory has no node of
(`--force` queues such a job anyway, e.g. before the nodes are added).
It says which queue it wrote to.
"""

from __future__ import annotations

import argparse
import copy
import getpass
import socket
import sys
from datetime import UTC, datetime
from typing import Any

import yaml

from optialloc.config import Config, describe_queue, load_config
from optialloc.errors import InputError, JobParseError
from optialloc.teuthology import (
    DEFAULT_PRIORITY,
    TEUTHOLOGY_TTR,
    dump_body,
    parse_job,
    split_machine_types,
    tube_for,
)
from optialloc.yaml_errors import describe_yaml_error

EXAMPLES = """\
examples:
  optialloc schedule fixtures/jobs/rados-basic.yaml --name my-run --machine-type smithi
  optialloc schedule fixtures/jobs/rados-basic.yaml --name my-run --machine-type smithi \\
      --priority 100 -N 3
  optialloc schedule fixtures/jobs/rados-basic.yaml fixtures/jobs/multi-type.yaml --name my-run
  optialloc schedule fixtures/jobs/rados-basic.yaml --name my-run --machine-type smithi --dry-run
  optialloc schedule fixtures/jobs/rados-basic.yaml --name later --machine-type newtype --force

Fields set here (name, priority, owner, machine_type, description, email,
first_in_suite, last_in_suite) are overridden by the same keys in the job
YAML, exactly as teuthology-schedule does.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "schedule",
        help="queue jobs exactly as teuthology-schedule would",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILE.yaml", help="job YAML (several are deep-merged)"
    )
    parser.add_argument("--name", help="run name (required unless the YAML has `name`)")
    parser.add_argument(
        "--priority",
        type=int,
        default=DEFAULT_PRIORITY,
        help=f"lower = more urgent (default {DEFAULT_PRIORITY})",
    )
    parser.add_argument("--owner", help="default: scheduled_<user>@<host>")
    parser.add_argument(
        "--machine-type",
        "--worker",
        dest="machine_type",
        help="machine type(s), e.g. smithi or smithi,mira (teuthology's --worker)",
    )
    parser.add_argument(
        "-N", "--num", type=int, default=1, metavar="COUNT", help="put COUNT copies"
    )
    parser.add_argument("--description", help="job description")
    parser.add_argument("--email", help="results mail address (last job of a suite)")
    parser.add_argument("--first-in-suite", action="store_true", help="mark as a suite's first job")
    parser.add_argument("--last-in-suite", action="store_true", help="mark as a suite's last job")
    parser.add_argument("--timeout", help="results_timeout in seconds (last job of a suite)")
    parser.add_argument("--seed", type=int, help="suite seed (first job of a suite)")
    parser.add_argument("--subset", help="suite subset such as 1/40 (first job of a suite)")
    parser.add_argument("--dry-run", action="store_true", help="print the body; queue nothing")
    parser.add_argument(
        "--force",
        action="store_true",
        help="queue even for a machine type the inventory has no node of",
    )
    parser.set_defaults(func=handle)


def deep_merge(base: Any, extra: Any) -> Any:
    """teuthology's `misc.deep_merge`: mappings merge, lists concatenate, scalars replace."""
    if extra is None:
        return base
    if base is None:
        return copy.deepcopy(extra)
    if isinstance(base, list) and isinstance(extra, list):
        return base + copy.deepcopy(extra)
    if isinstance(base, dict) and isinstance(extra, dict):
        merged = dict(base)
        for key, value in extra.items():
            merged[key] = deep_merge(merged.get(key), value)
        return merged
    return extra


def load_job_files(paths: list[str]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
        except OSError as exc:
            raise InputError(path, f"cannot read the job file ({exc.strerror or exc})") from exc
        except yaml.YAMLError as exc:
            raise InputError(
                path, f"not valid YAML ({describe_yaml_error(exc)}): fix the job file"
            ) from exc
        if data is None:
            continue
        if not isinstance(data, dict):
            raise InputError(
                path, f"expected a YAML mapping of job fields, got {type(data).__name__}"
            )
        merged = deep_merge(merged, data)
    return merged


def default_owner() -> str:
    return f"scheduled_{getpass.getuser()}@{socket.gethostname()}"


def build_body(args: argparse.Namespace, conf: dict[str, Any]) -> dict[str, Any]:
    """The job body teuthology-schedule would put for these arguments."""
    if not args.first_in_suite:
        for flag, value in (("--seed", args.seed), ("--subset", args.subset)):
            if value is not None:
                raise InputError(
                    flag, "only applies to the first job of a suite (--first-in-suite)"
                )
    if not args.last_in_suite:
        for flag, value in (("--email", args.email), ("--timeout", args.timeout)):
            if value:
                raise InputError(flag, "only applies to the last job of a suite (--last-in-suite)")
    conf = {k: v for k, v in conf.items() if k != "targets"}  # the dispatcher picks the nodes
    body: dict[str, Any] = {
        "name": args.name,
        "first_in_suite": args.first_in_suite,
        "last_in_suite": args.last_in_suite,
        "email": args.email,
        "description": args.description,
        "owner": args.owner or default_owner(),
        "verbose": False,
        "machine_type": args.machine_type,
        "tube": args.machine_type,
        "priority": args.priority,
    }
    body.update(conf)  # as teuthology: the YAML wins over the command line
    for key, value in (
        ("results_timeout", args.timeout),
        ("seed", args.seed),
        ("subset", args.subset),
        ("no_nested_subset", False),
    ):
        if value is not None:
            body[key] = value
    name = body.get("name")
    if not name or str(name).isdigit():
        raise InputError(
            "--name", "missing or only digits: pass a descriptive run name (--name RUN)"
        )
    if not body.get("machine_type"):
        raise InputError(
            "--machine-type", "missing: pass --machine-type (e.g. smithi or smithi,mira)"
        )
    if "tube" not in conf:
        body["tube"] = tube_for(str(body["machine_type"]))
    return body


def handle(args: argparse.Namespace) -> int:
    from optialloc.cli.queue import open_configured_queue  # one way to open the configured queue

    if args.num < 1:
        raise InputError("-N", f"{args.num} is not a positive count of jobs")
    body = build_body(args, load_job_files(args.files))
    try:  # refuse now what the dispatcher would bury later
        parse_job(body, job_id="0", queued_at=datetime.now(UTC), tube=str(body["tube"]))
    except JobParseError as exc:
        raise InputError(exc.field, f"{exc.problem} (in {', '.join(args.files)})") from exc
    refuse_empty(body, args.files)
    text = dump_body(body)
    if args.dry_run:
        sys.stdout.write("---\n" + text)
        return 0
    config = load_config(args.config)
    if not args.force:
        refuse_unknown_types(config, str(body["machine_type"]))
    queue = open_configured_queue(args)
    ids = []
    try:
        for _ in range(args.num):
            job_id = queue.put(str(body["tube"]), text, int(body["priority"]), TEUTHOLOGY_TTR)
            ids.append(job_id)
            print(f"Job scheduled with name {body['name']} and ID {job_id} (tube {body['tube']})")
    finally:
        queue.close()
    which = f"job {ids[0]}" if len(ids) == 1 else f"{len(ids)} jobs ({ids[0]}-{ids[-1]})"
    print(f"queued {which} in {describe_queue(config)}", file=sys.stderr)
    return 0


def refuse_empty(body: dict[str, Any], files: list[str]) -> None:
    """An empty job (no roles, no tasks, not a suite's last job) would run nothing: refuse it."""
    if body.get("roles") or body.get("tasks") or body.get("last_in_suite"):
        return
    raise InputError(
        "roles/tasks",
        f"the job has neither (in {', '.join(files)}): it would lock nothing and run "
        "nothing; add roles and tasks, or pass --last-in-suite for a suite's last job",
    )


def refuse_unknown_types(config: Config, machine_type: str) -> None:
    """Refuse a machine type the inventory has no node of (a typo, or nodes not added yet)."""
    from optialloc.inventory import open_inventory

    inventory = open_inventory(config)
    try:
        known = {node.machine_type for node in inventory.nodes()}
    finally:
        close = getattr(inventory, "close", None)
        if close is not None:
            close()
    missing = [t for t in split_machine_types(machine_type) if t not in known]
    if missing:
        raise InputError(
            "--machine-type",
            f"the inventory has no node of type {', '.join(missing)} "
            f"(it has {', '.join(sorted(known)) or 'no nodes'}): the job could never run; "
            "fix the type, or pass --force to queue it anyway",
        )
