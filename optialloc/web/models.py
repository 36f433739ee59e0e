"""The JSON API's request and response shapes (they make `/api/openapi.json`).

Field names are part of the API: `QueuePage.jobs[*].job_id`, `position`,
`reason`, `detail` and `estimated_start` are relied on by scripts and must
stay. Times are ISO 8601 strings in UTC; `null` means unknown.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from optialloc.teuthology import MAX_PRIORITY


class QueuedJob(BaseModel):
    job_id: str
    position: int | None = Field(description="1-based dispatch order from the last tick")
    tube: str
    priority: int = Field(description="teuthology priority: lower is more urgent")
    effective_priority: float = Field(description="after aging and the fair-share penalty")
    owner: str
    run: str
    nodes_needed: int
    machine_types: list[str]
    queued_at: str
    age_s: float
    reason: str | None = Field(description="why it waits (docs/queue.md), null before a tick")
    detail: str | None
    estimated_start: str | None = Field(
        description="forward-replay estimate; null: unknown or not within 48 h"
    )
    pulpito_url: str | None = None


class QueuePage(BaseModel):
    total: int = Field(description="jobs matching the filters")
    offset: int
    limit: int
    jobs: list[QueuedJob]
    estimates_note: str
    estimates_at: str | None
    view_built_at: str


class RunSummary(BaseModel):
    run: str
    owner: str
    counts: dict[str, int] = Field(
        description="jobs per status: queued, waiting, running, pass, fail, dead"
    )
    positions: list[int] = Field(description="queue positions of its queued jobs (first 100)")
    first_position: int | None
    pulpito_url: str | None = None


class RunsPage(BaseModel):
    total: int
    offset: int
    limit: int
    runs: list[RunSummary]


class NodeInfo(BaseModel):
    name: str
    machine_type: str
    state: str = Field(description="free, locked or down")
    up: bool
    locked: bool
    locked_by: str | None
    locked_since: str | None
    description: str | None
    job_id: str | None = Field(description="the job optialloc runs on it, if any")
    run: str | None


class NodesPage(BaseModel):
    total: int
    counts: dict[str, dict[str, int]] = Field(description="machine type -> state -> nodes")
    nodes: list[NodeInfo]


class TypeUsage(BaseModel):
    machine_type: str
    locked: int
    share_of_type: float | None
    cap: int | None = Field(description="owner_max_share cap in nodes; null: no cap")
    at_cap: bool


class OwnerUsage(BaseModel):
    owner: str
    locked: int
    by_machine_type: list[TypeUsage]
    usage_node_hours: float = Field(description="decayed past use (half-life one day)")
    usage_share: float
    priority_factor: float = Field(description="effective priority multiplier from usage")


class UsageAnswer(BaseModel):
    owners: list[OwnerUsage]


class TubeInfo(BaseModel):
    tube: str
    ready: int
    claimed: int
    buried: int
    paused: bool
    pause_seconds_left: int


class TubesAnswer(BaseModel):
    tubes: list[TubeInfo]


class BuriedInfo(BaseModel):
    job_id: str
    tube: str
    reason: str
    buried_at: str


class BuriedAnswer(BaseModel):
    total: int
    jobs: list[BuriedInfo]


class LastTick(BaseModel):
    available: bool = Field(description="false until a serve has ticked on this state")
    tick: int | None = None
    taken_at: str | None = None
    pending: int | None = None
    running: int | None = None
    started: list[str] = []
    held_count: int = 0
    held: list[dict[str, str]] = []
    solver: dict[str, Any] | None = None
    times_s: dict[str, float] = {}
    error: str | None = None


class ActionResult(BaseModel):
    ok: bool = True
    action: str
    job_ids: list[str] = []
    message: str


class PauseRequest(BaseModel):
    seconds: int = Field(3600, ge=1, le=30 * 86400, description="pause length")


class PriorityRequest(BaseModel):
    priority: int = Field(ge=0, le=MAX_PRIORITY, description="lower is more urgent")


class KickRequest(BaseModel):
    job_ids: list[str] = Field(min_length=1, max_length=10000)


class Problem(BaseModel):
    detail: str
