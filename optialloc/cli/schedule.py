"""`optialloc schedule`: queue jobs exactly as `teuthology-schedule` does.

The body is built the way teuthology's `schedule.build_config` builds it
(CLI fields first, then the job YAML on top, so the YAML wins, as in
teuthology; `targets` stripped), dumped with `yaml.safe_dump`, and put with
the body's priority and a ttr of 86400 s into the tube of its machine type
(`multi` for several). So a lab without teuthology can feed optialloc, and
the beanstalkd path sees exactly what teuthology would put there.
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

from optialloc.errors import InputError, JobParseError
from optialloc.teuthology import DEFAULT_PRIORITY, TEUTHOLOGY_TTR, dump_body, parse_job, tube_for

EXAMPLES = """\
examples:
  optialloc schedule job.yaml --name my-run --machine-type smithi
  optialloc schedule job.yaml --name my-run --priority 100 -N 3
  optialloc schedule base.yaml overrides.yaml --name my-run --machine-type smithi,mira
  optialloc schedule job.yaml --name my-run --machine-type smithi --dry-run

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
            first = str(exc).splitlines()[0] if str(exc) else "parse error"
            raise InputError(path, f"not valid YAML ({first}): fix the job file") from exc
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
    text = dump_body(body)
    if args.dry_run:
        sys.stdout.write("---\n" + text)
        return 0
    queue = open_configured_queue(args)
    try:
        for _ in range(args.num):
            job_id = queue.put(str(body["tube"]), text, int(body["priority"]), TEUTHOLOGY_TTR)
            print(f"Job scheduled with name {body['name']} and ID {job_id} (tube {body['tube']})")
    finally:
        queue.close()
    return 0
