"""A job command that treats its locks as a teuthology job does (stdlib only).

    python lock_check_runner.py LOCK_SERVER ORIG_CONFIG RECORDS

1. Like teuthology's `internal.check_lock`: for each target of
   `orig.config.yaml`, `GET /nodes/<name>/` and check it is up, locked, and
   locked by the job's `owner` (the same messages as check_lock's asserts).
2. Works for `duration` seconds (a body field; default 0.2).
3. Unless the body says `skip_unlock` (as a failed job without
   `unlock_on_failure` leaves its nodes locked), like `teuthology-supervisor`'s
   `unlock_targets`: each target still locked
   with the job's archive path as description is unlocked with
   `PUT /nodes/<name>/lock {"locked": false, "locked_by": owner, "description":
   archive_path}`; the answer must be 200.

Appends the job id to RECORDS.checked once the checks are done, and one JSON
line per run to RECORDS: job id, owner, targets, what each
target's lock said, the unlock answers, start and end times. Exit 0 when all
held; 1 when a check failed; 2 when an unlock was refused. Not collected by
pytest (no test_ prefix); used by tests/test_teuthology_locks.py.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import yaml


def _call(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def main(argv: list[str]) -> int:
    lock_server, config_path, records = argv
    base = lock_server.rstrip("/")
    with open(config_path) as handle:
        config = yaml.safe_load(handle)
    owner, archive = config["owner"], config["archive_path"]
    names = [target.split("@", 1)[-1] for target in config["targets"]]
    record: dict[str, Any] = {
        "job_id": str(config["job_id"]),
        "owner": owner,
        "nodes": names,
        "start": time.time(),
    }
    code = 0
    seen = {}
    for name in names:  # check_lock, assert by assert
        status, node = _call(f"{base}/nodes/{name}/")
        seen[name] = [node.get("locked_by"), node.get("description")] if status == 200 else None
        problem = None
        if status != 200:
            problem = f"could not read lock status for {name}"
        elif not node["up"]:
            problem = f"machine {name} is marked down"
        elif not node["locked"]:
            problem = f"machine {name} is not locked"
        elif node["locked_by"] != owner:
            problem = f"machine {name} is locked by {node['locked_by']}, not {owner}"
        if problem:
            print(problem, file=sys.stderr)
            code = 1
    record["seen"] = seen
    with open(records + ".checked", "a") as handle:  # checks done (tests wait for this)
        handle.write(f"{record['job_id']}\n")
    time.sleep(float(config.get("duration", 0.2)))
    unlocks = {}
    for name in names if not config.get("skip_unlock") else []:  # supervisor's unlock_targets
        _status, node = _call(f"{base}/nodes/{name}/")
        if not node.get("locked") or node.get("description") != archive:
            continue
        body = {"locked": False, "locked_by": owner, "description": archive}
        status, answer = _call(f"{base}/nodes/{name}/lock", "PUT", body)
        unlocks[name] = [status, answer.get("message") if isinstance(answer, dict) else None]
        if status != 200:
            print(f"failed to unlock {name}: {answer}", file=sys.stderr)
            code = code or 2
    record.update(unlocks=unlocks, end=time.time(), exit=code)
    with open(records, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
