"""A job as teuthology runs it, as far as locks go: run by teuthology's own interpreter.

    <python with teuthology> teuthology_lock_check.py LOCK_SERVER RESULTS_SERVER ORIG_CONFIG

Reads the job's `orig.config.yaml` (as optialloc's runner wrote it), then calls
teuthology's own code against the lock server: `internal.check_lock` (what
every real job runs first: each target up, locked, and locked by the job's
owner) and the supervisor's `unlock_targets` (what `teuthology-supervisor`
does when the job ends: unlock as the owner the targets locked with the job's
archive path). Exit 0 when both pass; 1 with teuthology's assertion message
otherwise; 2 when a target is still locked afterwards (the unlock was
refused). Not collected by pytest (no test_ prefix); used by
tests/test_teuthology_locks.py when teuthology is installed.
"""

from __future__ import annotations

import logging
import sys

import yaml


def main(argv: list[str]) -> int:
    lock_server, results_server, config_path = argv
    from teuthology.config import FakeNamespace
    from teuthology.config import config as teuth_config
    from teuthology.dispatcher import supervisor
    from teuthology.lock import ops, query
    from teuthology.task.internal.check_lock import check_lock

    # The only stand-in: there is no machine to power off or ssh into. stop_node runs
    # before the unlock request and its failure is caught by unlock_one anyway (after
    # ~30 s of ssh retries); every lock-server call is teuthology's own.
    ops.stop_node = lambda name, status: None
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    teuth_config.lock_server = lock_server
    teuth_config.results_server = results_server
    teuth_config.lab_domain = ""  # the look-alike's nodes have short names
    with open(config_path) as handle:
        job_config = yaml.safe_load(handle)
    ctx = FakeNamespace({"config": job_config, "owner": job_config["owner"]})
    try:
        check_lock(ctx, None)
    except AssertionError as exc:
        print(f"check_lock failed: {exc}", file=sys.stderr)
        return 1
    print("check_lock passed", file=sys.stderr)
    supervisor.unlock_targets(job_config)
    still = [
        name
        for name in job_config["targets"]
        if query.get_status(name).get("locked")
        and query.get_status(name).get("description") == job_config["archive_path"]
    ]
    if still:
        print(f"unlock_targets left {still} locked", file=sys.stderr)
        return 2
    print("unlock_targets unlocked every target", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
