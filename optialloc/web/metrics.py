"""`GET /metrics`: the lab's scheduling figures in Prometheus text format.

A custom collector turns the refresher's current `LabView` (queue, nodes,
buried jobs) and serve's `last_tick.json` record (tick and solver time
histograms, totals since serve started) into metric families at scrape time;
nothing is counted in the web process itself, so a restart of the web server
loses nothing. Names follow Prometheus conventions (`optialloc_` prefix,
`_total` counters, `_seconds` units); the list is in docs/web.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from optialloc.dispatch.last_tick import reason_class
from optialloc.web.state import LabView

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _histogram(name: str, doc: str, data: dict[str, Any] | None) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc)
    if data:
        buckets = [
            (str(float(le)), float(n)) for le, n in zip(data["le"], data["buckets"], strict=True)
        ]
        buckets.append(("+Inf", float(data["count"])))
        family.add_metric([], buckets, float(data["sum"]))
    return family


class LabCollector(Collector):
    """Metric families of the current view (see the module docstring)."""

    def __init__(self, view: Callable[[], LabView]) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        view = self._view()
        queued = GaugeMetricFamily(
            "optialloc_queued_jobs",
            "Pending jobs per tube and teuthology priority band",
            labels=["tube", "priority_band"],
        )
        for (tube, band), n in sorted(view.queued.items()):
            queued.add_metric([tube, band], n)
        yield queued
        nodes = GaugeMetricFamily(
            "optialloc_nodes", "Nodes per machine type and state", labels=["machine_type", "state"]
        )
        states = Counter((node["machine_type"], node["state"]) for node in view.nodes)
        for (machine_type, state), count in sorted(states.items()):
            nodes.add_metric([machine_type, state], count)
        yield nodes
        buried = GaugeMetricFamily(
            "optialloc_buried_jobs", "Buried jobs now, by reason class", labels=["reason_class"]
        )
        for label, n in sorted(Counter(reason_class(b["reason"]) for b in view.buried).items()):
            buried.add_metric([label], n)
        yield buried
        paused = GaugeMetricFamily(
            "optialloc_tube_paused", "1 while a tube is paused", labels=["tube"]
        )
        for info in view.tubes:
            paused.add_metric([info["tube"]], 1.0 if info["paused"] else 0.0)
        yield paused
        yield from self._tick_families(view.last_tick or {})
        yield GaugeMetricFamily(
            "optialloc_view_age_seconds",
            "Age of the state the web view serves (refreshed in the background)",
            value=max(0.0, (datetime.now(UTC) - view.built_at).total_seconds()),
        )

    def _tick_families(self, last: dict[str, Any]) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "optialloc_running_jobs", "Jobs running at the last tick", value=last.get("running", 0)
        )
        yield GaugeMetricFamily(
            "optialloc_last_tick", "Number of the last tick", value=last.get("tick", 0)
        )
        solver = last.get("solver") or {}
        yield GaugeMetricFamily(
            "optialloc_solver_gap",
            "Relative optimality gap of the last solve",
            value=solver.get("gap", 0.0),
        )
        yield GaugeMetricFamily(
            "optialloc_solver_objective",
            "Objective of the last solve",
            value=solver.get("objective", 0.0),
        )
        yield GaugeMetricFamily(
            "optialloc_held_nodes",
            "Nodes held back for reservations at the last tick",
            value=last.get("held_count", 0),
        )
        hist = last.get("histograms") or {}
        yield _histogram(
            "optialloc_tick_duration_seconds", "Wall time of whole ticks", hist.get("tick_s")
        )
        yield _histogram(
            "optialloc_solver_wall_seconds", "Wall time of the CP-SAT solves", hist.get("solver_s")
        )
        totals = last.get("totals") or {}
        for key, name, doc in (
            ("ticks", "optialloc_ticks_total", "Ticks since serve started"),
            ("started", "optialloc_jobs_started_total", "Jobs started since serve started"),
            ("finished", "optialloc_jobs_finished_total", "Jobs that ended on their own"),
            ("lock_failures", "optialloc_lock_failures_total", "Starts refused by a lock failure"),
            (
                "backend_outages",
                "optialloc_backend_outages_total",
                "Ticks without scheduling: a backend was down",
            ),
            ("plans_rejected", "optialloc_plans_rejected_total", "Plans the validator refused"),
        ):
            yield CounterMetricFamily(name, doc, value=totals.get(key, 0))
        failed = CounterMetricFamily(
            "optialloc_jobs_failed_total",
            "Jobs buried or not started by the dispatcher, by reason class",
            labels=["reason_class"],
        )
        for label, n in sorted((last.get("failed_by_class") or {}).items()):
            failed.add_metric([label], n)
        yield failed


def make_registry(view: Callable[[], LabView]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LabCollector(view))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
