"""What-if output: the side-by-side table (text, Markdown, CSV, JSON) and the PNG plots.

Every figure carries its unit: waits in hours in tables (seconds in JSON,
keys ending in `_s`), utilization and shares in percent, solver times in ms.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from optialloc.sim.metrics import BANDS, band_of
from optialloc.sim.scenario import Outcome

log = logging.getLogger(__name__)

Fmt = Callable[[float], str]


def _pct(v: float) -> str:
    return f"{v * 100:.1f} %"


def _h(v: float) -> str:
    return f"{v / 3600:.2f} h"


def _num(v: float) -> str:
    return f"{v:.2f}"


def _ms(v: float) -> str:
    return f"{v * 1000:.1f} ms"


def _int(v: float) -> str:
    return str(round(v))


def _s(v: float) -> str:
    return f"{v:.1f} s"


ROWS: tuple[tuple[str, str, Fmt], ...] = (
    ("jobs", "jobs", _int),
    ("utilization (warm-up and drain excluded)", "utilization", _pct),
    ("wait mean", "mean_wait_s", _h),
    ("wait p50", "p50_wait_s", _h),
    ("wait p95", "p95_wait_s", _h),
    ("wait p99", "p99_wait_s", _h),
    ("wait max", "max_wait_s", _h),
    ("mean bounded slowdown (tau 10 s)", "mean_bounded_slowdown", _num),
    ("priority-weighted wait (w = 1000/priority)", "priority_weighted_wait_s", _h),
    ("jobs waiting > 24 h", "share_wait_over_24h", _pct),
    ("max wait, multi-node jobs", "max_wait_multi_node_s", _h),
    ("max wait, 1-node jobs", "max_wait_1_node_s", _h),
    ("worst band: max wait 4-node / 1-node", "worst_4_vs_1_node_max_wait_ratio", _num),
    ("Jain's index over owners", "jain_owners", lambda v: f"{v:.3f}"),
    ("runs finished", "runs_finished", _int),
    ("run turnaround mean", "mean_run_turnaround_s", _h),
    ("run turnaround max", "max_run_turnaround_s", _h),
    ("never started", "never_started", _int),
    ("solver ticks", "solver_ticks", _int),
    ("solver time p50 per tick", "solver_p50_s", _ms),
    ("solver time p99 per tick", "solver_p99_s", _ms),
    ("solver max optimality gap", "solver_max_gap", _pct),
    ("plans rejected by the validator", "plans_rejected", _int),
    ("simulation wall time", "sim_wall_s", _s),
)


#: Metrics that add up over windows: a multi-window table shows their mean and their total.
_PER_WINDOW = ("jobs", "sim_wall_s")


def table(outcomes: Sequence[Outcome]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per metric, one column per policy/baseline."""
    summaries = [o.summary() for o in outcomes]
    header = ["metric", *(o.name for o in outcomes)]
    # With several windows a row is the mean over windows: say so, and add the totals.
    multi = any(len(o.per_window) > 1 for o in outcomes)
    rows = [
        [
            f"{label}, per window (mean)" if multi and key in _PER_WINDOW else label,
            *(fmt(float(s.get(key, 0.0))) for s in summaries),
        ]
        for label, key, fmt in ROWS
    ]
    if multi:
        for label, key, fmt in ROWS:
            if key in _PER_WINDOW:
                rows.append(
                    [
                        f"{label}, all windows",
                        *(fmt(sum(float(w.get(key, 0.0)) for w in o.per_window)) for o in outcomes),
                    ]
                )
    types = sorted({mt for s in summaries for mt in s.get("per_machine_type", {})})
    for mt in types:
        per = [s["per_machine_type"].get(mt, {}) for s in summaries]
        # measured over the same window as the overall row: jobs of a type that only
        # arrives at the end run in the drain and count 0 % here, while they still wait
        rows.append(
            [
                f"utilization {mt} (warm-up and drain excluded)",
                *(_pct(p.get("utilization", 0.0)) for p in per),
            ]
        )
        rows.append([f"wait mean {mt}", *(_h(p.get("mean_wait_s", 0.0)) for p in per)])
    bands = [b for b, _, _ in BANDS if any(b in s.get("max_wait_by_band_s", {}) for s in summaries)]
    for band in bands:
        maxima = [s.get("max_wait_by_band_s", {}).get(band, 0.0) for s in summaries]
        rows.append([f"wait max, priority {band}", *(_h(v) for v in maxima)])
    return header, rows


def render_text(outcomes: Sequence[Outcome]) -> str:
    header, rows = table(outcomes)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(outcomes: Sequence[Outcome]) -> str:
    header, rows = table(outcomes)
    out = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def json_object(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """One object keyed by policy/baseline name (metrics averaged over windows)."""
    out: dict[str, Any] = {}
    for o in outcomes:
        summary = o.summary()
        if len(o.per_window) > 1:
            summary["per_window"] = [
                {k: v for k, v in w.items() if isinstance(v, int | float)} for w in o.per_window
            ]
        if o.notes:
            summary["notes"] = o.notes[:20]
        out[o.name] = summary
    return out


def write_report(
    outcomes: Sequence[Outcome], directory: str | Path, title: str = "What-if"
) -> list[Path]:
    """Write results.md, results.csv, results.json and the PNG plots into `directory`."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    written = []
    md = path / "results.md"
    md.write_text(f"# {title}\n\n{render_markdown(outcomes)}\n", encoding="utf-8")
    written.append(md)
    header, rows = table(outcomes)
    csv_path = path / "results.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    written.append(csv_path)
    js = path / "results.json"
    js.write_text(
        json.dumps(json_object(outcomes), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    written.append(js)
    written += plot_all(outcomes, path)
    return written


def plot_all(outcomes: Sequence[Outcome], path: Path) -> list[Path]:
    """The four plots; matplotlib's Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    names = [o.name for o in outcomes]

    # 1. wait distribution per priority band (box plots, hours, log scale)
    by_band: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for o in outcomes:
        for result in o.results:
            for r in result.records:
                if r.start is not None:
                    by_band[band_of(r.job.priority)][o.name].append(
                        max(r.start - r.job.submit, 1.0) / 3600
                    )
    bands = [b for b, _, _ in BANDS if b in by_band]
    fig, ax = plt.subplots(figsize=(min(12.0, 3.0 + 1.5 * len(bands)), 4.5))
    width = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        data = [by_band[b].get(name) or [1 / 3600] for b in bands]
        pos = [i + (k - (len(names) - 1) / 2) * width for i in range(len(bands))]
        box = ax.boxplot(
            data, positions=pos, widths=width * 0.9, patch_artist=True, showfliers=False
        )
        for patch in box["boxes"]:
            patch.set_facecolor(f"C{k}")
        ax.plot([], [], color=f"C{k}", label=name, linewidth=6)
    ax.set_xticks(range(len(bands)), [f"priority {b}" for b in bands])
    ax.set_yscale("log")
    ax.set_ylabel("wait (h, log scale)")
    ax.set_title("Wait per priority band (box: quartiles, whiskers: 1.5 IQR)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    files.append(_save(fig, path / "wait_by_band.png", plt))

    # 2. utilization and queue depth over time (first window)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for k, o in enumerate(outcomes):
        result = o.results[0]
        if not result.timeline:
            continue
        t0 = result.timeline[0][0]
        xs = [(t - t0) / 3600 for t, _, _ in result.timeline]
        total = max(result.total_nodes, 1)
        top.step(
            xs,
            [100 * b / total for _, b, _ in result.timeline],
            where="post",
            label=o.name,
            color=f"C{k}",
        )
        bottom.step(
            xs, [q for _, _, q in result.timeline], where="post", label=o.name, color=f"C{k}"
        )
    top.set_ylabel("busy nodes (%)")
    bottom.set_ylabel("queued jobs")
    bottom.set_xlabel("simulated time (h)")
    top.legend(fontsize="small")
    top.set_title("Utilization and queue depth over time")
    fig.tight_layout()
    files.append(_save(fig, path / "utilization_queue.png", plt))

    # 3. per-owner share: node-hours received / demanded
    fig, ax = plt.subplots(figsize=(10, 4.5))
    owners: list[str] = []
    shares: dict[str, dict[str, float]] = {}
    for o in outcomes:
        got: dict[str, float] = defaultdict(float)
        want: dict[str, float] = defaultdict(float)
        for result in o.results:
            end = max(r.job.submit for r in result.records)
            for r in result.records:
                want[r.job.owner] += r.job.nodes * r.job.runtime
                if r.start is not None and r.end is not None:
                    got[r.job.owner] += r.job.nodes * max(0.0, min(r.end, end) - r.start)
        shares[o.name] = {w: got[w] / want[w] for w in want if want[w] > 0}
        owners = sorted(set(owners) | set(want), key=lambda w: -want[w])
    owners = owners[:25]
    for k, name in enumerate(names):
        pos = [i + (k - (len(names) - 1) / 2) * width for i in range(len(owners))]
        ax.bar(
            pos,
            [100 * shares[name].get(w, 0.0) for w in owners],
            width=width,
            label=name,
            color=f"C{k}",
        )
    ax.set_xticks(
        range(len(owners)),
        [w.split("@")[0].replace("scheduled_", "") for w in owners],
        rotation=60,
        ha="right",
        fontsize="small",
    )
    ax.set_xlabel("owner (job `owner`, without scheduled_ and @host)")
    ax.set_ylabel("node-hours received / demanded (%)")
    ax.set_title("Per-owner share until the last arrival (owners by demand)")
    ax.set_ylim(0, 100)  # a share is at most 100 %; the legend sits outside the axes
    # The legend names schedulers (bar colours); an owner may share a baseline's name
    # (e.g. "teuthology"), so it is titled and kept apart from the owner axis.
    ax.legend(title="scheduler", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    files.append(_save(fig, path / "owner_share.png", plt))

    # 4. solver time per tick
    fig, ax = plt.subplots(figsize=(9, 4))
    plotted = False
    for k, o in enumerate(outcomes):
        ticks = [t for result in o.results for t in result.ticks]
        if ticks:
            t0 = o.results[0].timeline[0][0] if o.results[0].timeline else 0.0
            ax.plot(
                [(t.at - t0) / 3600 for t in ticks],
                [t.wall_s * 1000 for t in ticks],
                ".",
                markersize=2,
                label=o.name,
                color=f"C{k}",
            )
            plotted = True
    if not plotted:
        ax.text(0.5, 0.5, "no solver ticks (baselines only)", ha="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize="small")
    ax.set_xlabel("simulated time (h)")
    ax.set_ylabel("solver wall time per tick (ms)")
    ax.set_title("Solver time per tick")
    fig.tight_layout()
    files.append(_save(fig, path / "solver_time.png", plt))
    return files


def _save(fig: Any, target: Path, plt: Any) -> Path:
    fig.savefig(target, dpi=80)
    plt.close(fig)
    return target
