"""Teuthology-like vocabulary for the fixture generator: users, suites, roles, bodies.

Everything here is data plus small pure builders; `optialloc.snapshots.fixturegen`
decides how many of what. The shapes follow real `teuthology-schedule`
bodies (docs: teuthology-interfaces.md section 1): `roles` has one inner list
per node, `machine_type` may list several types, `owner` is
`scheduled_<user>@teuthology`, run names are
`<user>-<date>_<time>-<suite>-<branch>-distro-default-<machine_type>`.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

#: Sepia-like user names (generic, not real people); extended with digits past 50.
USERS = (
    "teuthology",
    "adam",
    "amy",
    "anthony",
    "bill",
    "casey",
    "chris",
    "dan",
    "david",
    "emma",
    "frank",
    "gabriel",
    "greg",
    "harry",
    "ilya",
    "ivan",
    "jason",
    "jeff",
    "john",
    "josh",
    "kefu",
    "kamoltat",
    "laura",
    "leonid",
    "matan",
    "mark",
    "nitzan",
    "orit",
    "patrick",
    "paul",
    "prashant",
    "radek",
    "ramana",
    "ronen",
    "sage",
    "sam",
    "samuel",
    "sebastian",
    "sridhar",
    "tomer",
    "venky",
    "vikhyat",
    "xiubo",
    "yehuda",
    "yuri",
    "zac",
    "aishwarya",
    "milind",
    "neha",
    "shraddha",
)

SUITES = (
    "rados",
    "rbd",
    "fs",
    "rgw",
    "krbd",
    "orch",
    "upgrade",
    "crimson-rados",
    "powercycle",
    "smoke",
)
BRANCHES = ("main", "squid", "reef", "tentacle")

#: (os_type, os_version) a run may ask for; None means "any OS".
OS_CHOICES: tuple[tuple[tuple[str, str] | None, float], ...] = (
    (("ubuntu", "22.04"), 0.55),
    (("centos", "9.stream"), 0.2),
    (("ubuntu", "20.04"), 0.1),
    (None, 0.15),
)

#: The OS a node of each type runs now (weights); bare metal gets reimaged anyway.
NODE_OS: dict[str, tuple[tuple[tuple[str, str], float], ...]] = {
    "smithi": ((("ubuntu", "22.04"), 0.8), (("centos", "9.stream"), 0.2)),
    "mira": ((("ubuntu", "20.04"), 0.5), (("ubuntu", "22.04"), 0.5)),
    "gibba": ((("ubuntu", "22.04"), 1.0),),
}

#: clusters/fixed-N role layouts, one inner list per node (shared objects: YAML anchors).
ROLES: dict[int, list[list[str]]] = {
    1: [["mon.a", "mgr.x", "osd.0", "osd.1", "osd.2", "client.0"]],
    2: [["mon.a", "mgr.x", "osd.0", "osd.1"], ["client.0"]],
    3: [
        ["mon.a", "mgr.x", "osd.0", "osd.1", "osd.2"],
        ["mon.b", "osd.3", "osd.4", "osd.5"],
        ["mon.c", "mgr.y", "osd.6", "osd.7", "client.0"],
    ],
    4: [
        ["mon.a", "osd.0", "osd.1"],
        ["mon.b", "osd.2", "osd.3"],
        ["mon.c", "mgr.x", "osd.4", "osd.5"],
        ["client.0"],
    ],
}
#: How often a job needs 1..4 nodes.
NODE_WEIGHTS = {1: 0.35, 2: 0.4, 3: 0.15, 4: 0.1}

OBJECTSTORES = (
    "bluestore-bitmap",
    "bluestore-comp-lz4",
    "bluestore-low-osd-mem-target",
    "filestore-xfs",
)
WORKLOADS = (
    "rados_api_tests",
    "radosbench",
    "snaps-few-objects",
    "cache-snaps",
    "rbd_fsx",
    "fsstress",
    "rgw_s3tests",
    "test_cls",
    "scrub_test",
    "ec-rados-plugin",
)


def pick(rng: random.Random, weighted: tuple[tuple[Any, float], ...] | dict[Any, float]) -> Any:
    """One item drawn with the given weights."""
    items = list(weighted.items()) if isinstance(weighted, dict) else list(weighted)
    return rng.choices([item for item, _ in items], weights=[w for _, w in items], k=1)[0]


def user_names(count: int) -> list[str]:
    """`count` distinct user names: the Sepia-like list, then `<name><n>` past it."""
    names = list(USERS[:count])
    index = 2
    while len(names) < count:
        names.extend(f"{name}{index}" for name in USERS[: count - len(names)])
        index += 1
    return names


def run_name(user: str, when: datetime, suite: str, branch: str, machine_type: str) -> str:
    """A teuthology run name, e.g. `yuri-2026-11-20_20:00:03-rados-main-distro-default-smithi`."""
    stamp = when.strftime("%Y-%m-%d_%H:%M:%S")
    label = machine_type.split(",")[0]
    return f"{user}-{stamp}-{suite}-{branch}-distro-default-{label}"


def run_shared_parts(rng: random.Random, suite: str, branch: str) -> dict[str, Any]:
    """Body keys every job of one run shares (one object per run: YAML anchors keep files small)."""
    sha1 = "".join(rng.choice("0123456789abcdef") for _ in range(40))
    return {
        "branch": branch,
        "sha1": sha1,
        "suite": suite,
        "suite_branch": branch,
        "suite_sha1": sha1,
        "teuthology_branch": "main",
        "overrides": {
            "ceph": {"sha1": sha1, "log-ignorelist": ["\\(MDS_ALL_DOWN\\)", "\\(OSD_DOWN\\)"]},
            "install": {"ceph": {"flavor": "default", "sha1": sha1}},
        },
        "tasks": [
            {"install": None},
            {"ceph": None},
            {"workunit": {"clients": {"client.0": [f"{suite}/test.sh"]}}},
        ],
    }


def job_body(
    *,
    run: str,
    owner: str,
    priority: int,
    machine_type: str,
    timestamp: datetime,
    shared: dict[str, Any],
    nodes: int,
    description: str,
    os: tuple[str, str] | None,
    seed: int,
    first_in_suite: bool = False,
    last_in_suite: bool = False,
) -> dict[str, Any]:
    """One job body as `teuthology-schedule` queues it (no `job_id`: the queue gives it)."""
    body: dict[str, Any] = {
        "description": description,
        "email": None,
        "first_in_suite": first_in_suite,
        "last_in_suite": last_in_suite,
        "machine_type": machine_type,
        "name": run,
        "no_nested_subset": False,
        "owner": owner,
        "priority": priority,
        "seed": seed,
        "timestamp": timestamp.strftime("%Y-%m-%d_%H:%M:%S"),
        "tube": "multi" if "," in machine_type else machine_type,
        "verbose": False,
    }
    if os is not None:
        body["os_type"], body["os_version"] = os
    if nodes:
        body["roles"] = ROLES[nodes]
        body.update(shared)
    if last_in_suite:
        body["results_timeout"] = "21600"
    return body


def description_for(rng: random.Random, suite: str, nodes: int) -> str:
    """A suite facet description like teuthology's `rados/thrash/{clusters/fixed-2 ...}`."""
    store = rng.choice(OBJECTSTORES)
    work = rng.choice(WORKLOADS)
    return f"{suite}/basic/{{clusters/fixed-{nodes} objectstore/{store} tasks/{work}}}"
