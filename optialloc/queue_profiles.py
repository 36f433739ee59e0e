"""The queue grouped by scheduling profile (and indexed by job id), once per snapshot.

A job's *profile* is everything the solver and the validator read from it but
its id, its age and its description: owner, run, priority, machine types,
OS/arch, nodes, tube and `last_in_suite`. A suite run of 500 jobs has a
handful of profiles, so both work per profile instead of per job.

Grouping 20,000 queued jobs is a Python loop of ~8 ms; the solver and the
validator group the same snapshot's queue one after the other, so the last
answer is kept, keyed on the identity of the queue tuple (which the cache
holds, so the identity cannot be reused by another tuple). Only the grouping
is shared: every decision and every check on top of it stays the solver's or
the validator's own. `jobs_by_id` is the same idea for the id index the
validator and the dispatcher's commit both look jobs up in.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from types import MappingProxyType
from typing import Any

from optialloc.domain import Job

#: The profile of a job (read in C: it runs per queued job).
PROFILE = attrgetter(
    "owner",
    "run",
    "priority",
    "machine_types",
    "os_type",
    "os_version",
    "arch",
    "nodes_needed",
    "tube",
    "last_in_suite",
)
_JOB_ID = attrgetter("job_id")
#: Positions of fields in a `PROFILE` tuple that callers read.
RUN_FIELD, LAST_IN_SUITE_FIELD = 1, 9

Profile = tuple[Any, ...]


@dataclass(frozen=True)
class ProfileGroups:
    """The queue's jobs by profile, profiles in order of first appearance.

    `members[k]` are the queue indexes of the jobs with profile `keys[k]`, in
    queue order; `profile_of[i]` is the profile number of queue index `i`.
    Shared between callers: treat every part as read-only.
    """

    keys: tuple[Profile, ...]
    members: tuple[tuple[int, ...], ...]
    profile_of: tuple[int, ...]


_lock = threading.Lock()
_last: tuple[Sequence[Job], ProfileGroups] | None = None
_last_index: tuple[Sequence[Job], Mapping[str, Job]] | None = None


def profile_groups(queue: Sequence[Job]) -> ProfileGroups:
    """Group `queue` by `PROFILE`; asked again for the same tuple, the same answer.

    Only a tuple (a snapshot's queue) is remembered: it cannot change in between.
    """
    global _last
    last = _last
    if last is not None and last[0] is queue:
        return last[1]
    index_of: dict[Profile, int] = {}
    member_lists: list[list[int]] = []
    profile_of: list[int] = []
    for index, key in enumerate(map(PROFILE, queue)):
        k = index_of.get(key)
        if k is None:
            k = index_of[key] = len(member_lists)
            member_lists.append([index])
        else:
            member_lists[k].append(index)
        profile_of.append(k)
    groups = ProfileGroups(
        keys=tuple(index_of),
        members=tuple(map(tuple, member_lists)),
        profile_of=tuple(profile_of),
    )
    if type(queue) is tuple:
        with _lock:
            _last = (queue, groups)
    return groups


def jobs_by_id(queue: Sequence[Job]) -> Mapping[str, Job]:
    """`queue` by job id (read-only); asked again for the same tuple, the same mapping."""
    global _last_index
    last = _last_index
    if last is not None and last[0] is queue:
        return last[1]
    index = MappingProxyType(dict(zip(map(_JOB_ID, queue), queue, strict=True)))
    if type(queue) is tuple:
        with _lock:
            _last_index = (queue, index)
    return index
