"""Shared inputs of the what-if tests (tests/test_sim_*.py)."""

from __future__ import annotations

#: A two-node snapshot: one job running on smithi001 until t=600 s, two queued.
SNAPSHOT_YAML = """\
taken_at: '2026-11-24T12:00:00Z'
nodes:
- {name: smithi001, machine_type: smithi, locked: true, locked_by: x, description: d}
- {name: smithi002, machine_type: smithi}
queue:
- job_id: '7'
  queued_at: '2026-11-24T11:00:00Z'
  runtime: 600
  body: {name: r, owner: o, machine_type: smithi, roles: [[a], [b]]}
- job_id: '8'
  queued_at: '2026-11-24T11:30:00Z'
  runtime: 60
  body: {name: r, owner: o, machine_type: smithi, roles: [[a]]}
running:
- job_id: '5'
  started_at: '2026-11-24T11:50:00Z'
  nodes: [smithi001]
  runtime: 1200
  body:
    {name: r0, owner: o, machine_type: smithi, roles: [[a]], timestamp: '2026-11-24_11:00:00'}
"""
