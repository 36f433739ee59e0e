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

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from types import MappingProxyType
from typing import Any, TypeVar

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


Result = TypeVar("Result")


def _last_queue(compute: Callable[[Sequence[Job]], Result]) -> Callable[[Sequence[Job]], Result]:
    """Remember `compute`'s answer for the last queue tuple it was given.

    Only a tuple (a snapshot's queue) is remembered: it cannot change in between,
    and the memo holds it, so its identity cannot be reused by another tuple.
    """
    lock = threading.Lock()
    last: list[tuple[Sequence[Job], Result]] = []

    @functools.wraps(compute)
    def remembered(queue: Sequence[Job]) -> Result:
        entry = last[0] if last else None  # one read: another thread may replace it
        if entry is not None and entry[0] is queue:
            return entry[1]
        answer = compute(queue)
        if type(queue) is tuple:
            with lock:
                last[:] = [(queue, answer)]
        return answer

    return remembered


@_last_queue
def profile_groups(queue: Sequence[Job]) -> ProfileGroups:
    """Group `queue` by `PROFILE`; asked again for the same tuple, the same answer."""
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
    return ProfileGroups(
        keys=tuple(index_of),
        members=tuple(map(tuple, member_lists)),
        profile_of=tuple(profile_of),
    )


@_last_queue
def jobs_by_id(queue: Sequence[Job]) -> Mapping[str, Job]:
    """`queue` by job id (read-only); asked again for the same tuple, the same mapping."""
    return MappingProxyType(dict(zip(map(_JOB_ID, queue), queue, strict=True)))
