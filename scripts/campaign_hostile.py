"""Hostile-input campaign: thousands of generated bad bodies beside good ones, both backends.

Bodies (seeded): bad ones that must be buried at ingest with a reason (lone
surrogates in any field, priorities outside 0..MAX_PRIORITY in the body or
as beanstalkd's pri, alias bombs, recursive aliases, nesting thousands deep,
unsafe tags, invalid YAML, non-mappings, wrongly typed fields, non-UTF-8
bytes on the beanstalkd wire), odd ones that must run exactly once (NUL,
ESC, newlines and control characters in names, 4,100-character and
non-ASCII names, `..` and `/` names), and plain good ones. All are queued
before one `optialloc serve --exit-on-empty-queue` runs them.

Verdict: every bad body buried with a non-empty reason, every good and odd
one run exactly once, nothing left claimed, locked or open, serve exits 0,
`queue list/buried --json` exit 0, and the peak memory of every process
(serve and the CLI) stays under `--max-rss-mib`. Figures: counts, serve wall
time, peak RSS.

Usage: nice -n 10 python scripts/campaign_hostile.py [--bad 2000] [--good 200]
       [--odd 100] [--backend both] [--seed 0] [--max-rss-mib 600]
Exit status 1 on any loss.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from campaign_lab import (
    BACKENDS,
    REPO,
    CampaignLab,
    Losses,
    campaign_parser,
    children_peak_rss_mib,
    verdict,
)

sys.path.insert(0, str(REPO / "tests"))
from serve_support import job_body

from optialloc.errors import InputError
from optialloc.teuthology import MAX_PRIORITY, dump_body


def _bomb(rng: random.Random) -> str:
    width, levels = rng.choice(((10, 9), (9, 9), (10, 6), (20, 5)))
    lines = [f"a0: &a0 [{', '.join(['lol'] * width)}]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels)]
    return (
        "\n".join(lines) + f"\nname: bomb\nmachine_type: smithi\nroles: [[a]]\nx: *a{levels - 1}\n"
    )


def bad_bodies(rng: random.Random, count: int, wire: bool) -> list[tuple[str | bytes, int]]:
    """(body, queue priority) pairs that must each be buried at ingest."""
    makers = [
        lambda: (f'name: "run-\\ud{rng.randrange(800, 1000):03x}-x"\nroles: [[a]]\n', 100),
        lambda: (f'owner: "me\\udc{rng.randrange(0, 256):02x}"\nname: r\nroles: [[a]]\n', 100),
        lambda: ('description: "\\ud800"\nname: r\nroles: [[a]]\n', 100),
        lambda: ('name: r\nroles: [[a]]\ntasks: [{"\\udfff": 1}]\n', 100),
        lambda: (
            f"name: r\nroles: [[a]]\npriority: {rng.randrange(MAX_PRIORITY + 1, 2**32)}\n",
            100,
        ),
        lambda: (dump_body(job_body(1, run="pri")), rng.randrange(MAX_PRIORITY + 1, 2**32)),
        lambda: (_bomb(rng), 100),
        lambda: ("name: r\nroles: [[a]]\nx: &x [1, *x]\n", 100),
        lambda: (
            "name: r\nroles: [[a]]\nt: " + "[" * rng.randrange(100, 5000) + "]" * 5000 + "\n",
            100,
        ),
        lambda: (
            "name: r\nroles: [[a]]\nt:\n" + "".join("  " * i + "- \n" for i in range(1, 80)),
            100,
        ),
        lambda: ("name: !!python/object/apply:os.system ['true']\nroles: [[a]]\n", 100),
        lambda: ("name: r\nroles: [[a]\n", 100),
        lambda: ("- just\n- a list\n", 100),
        lambda: ("plain scalar\n", 100),
        lambda: ("name: r\nroles: 5\n", 100),
        lambda: ("name: r\nroles: [[a]]\npriority: soon\n", 100),
        lambda: ("name: r\nroles: [[a]]\nmachine_type: [a, b]\n", 100),
        lambda: ("name: [r]\nroles: [[a]]\n", 100),
        lambda: (
            "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(1, 60))) + ": [\n",
            100,
        ),
    ]
    if wire:
        makers.append(lambda: (b"name: r\xff\xfe\nroles: [[a]]\n", 100))
    return [rng.choice(makers)() for _ in range(count)]


def odd_bodies(rng: random.Random, count: int) -> list[dict[str, object]]:
    """Bodies with hostile names that are still valid jobs: each must run exactly once."""
    names = [
        lambda: "a\0b",
        lambda: "esc\x1b[31mred\x1b[0m",
        lambda: "new\nline\r\ttab\x7f",
        lambda: "r" * 4100,
        lambda: "é" * rng.randrange(100, 400),
        lambda: "../../etc/passwd",
        lambda: "..",
        lambda: "/abs/path",
        lambda: "".join(chr(rng.randrange(1, 32)) for _ in range(8)),
    ]
    return [job_body(1, run=rng.choice(names)(), duration="0") for _ in range(count)]


def run(bad: int, good: int, odd: int, backends: list[str], seed: int, max_rss: float) -> int:
    rng = random.Random(seed)
    total = Losses()
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="optialloc-hostile-") as tmp:
            lab = CampaignLab(Path(tmp), backend)
            try:
                bodies = bad_bodies(rng, bad, wire=backend == "beanstalk")
                goods = [job_body(1, run=f"good-{i % 5}", duration="0") for i in range(good)]
                odds = odd_bodies(rng, odd)
                mixed: list[tuple[str, object]] = [("bad", b) for b in bodies]
                mixed += [("good", g) for g in goods] + [("good", o) for o in odds]
                rng.shuffle(mixed)
                bad_ids: list[str] = []
                refused = 0
                put_start = time.monotonic()
                for kind, item in mixed:
                    if kind == "good":
                        lab.put([item])  # type: ignore[list-item]
                    else:
                        text, pri = item  # type: ignore[misc]
                        try:
                            bad_ids.append(lab.put_raw("smithi", text, pri))
                        except InputError:
                            refused += 1  # refused at the put (embedded queue), as it should
                put_s = time.monotonic() - put_start
                lab.expected_buried = set(bad_ids)
                started = time.monotonic()
                code, err = lab.serve(timeout=3600)
                serve_s = time.monotonic() - started
                losses = lab.losses()
                if code != 0:
                    losses.serve_failures.append(f"serve exit {code}: {err[-800:]}")
                cli = [sys.executable, "-m", "optialloc", "--config", str(lab.config), "queue"]
                buried: dict[str, str] = {}
                for verb in ("list", "buried"):
                    result = subprocess.run(
                        [*cli, verb, "--json"], capture_output=True, text=True, cwd=REPO,
                        timeout=600,
                    )  # fmt: skip
                    if result.returncode != 0:
                        losses.serve_failures.append(f"queue {verb}: {result.stderr[-500:]}")
                    elif verb == "buried":
                        buried = {b["job_id"]: b["reason"] for b in json.loads(result.stdout)}
                ran_once = good + odd - len(losses.lost) - len(losses.twice)
                not_buried = [j for j in bad_ids if not buried.get(j)]
                losses.lost += [f"bad {j} not buried with a reason" for j in not_buried]
                rss = children_peak_rss_mib()
                if rss > max_rss:
                    losses.serve_failures.append(f"peak RSS {rss:.0f} MiB > {max_rss:.0f} MiB")
                print(
                    f"hostile campaign [{backend}]: {len(bad_ids) + refused} bad bodies "
                    f"(refused at the put: {refused}; buried with a reason: "
                    f"{len(bad_ids) - len(not_buried)}), {good} good + {odd} odd-named "
                    f"(run exactly once: {ran_once}), "
                    f"put {put_s:.1f} s, serve {serve_s:.1f} s, peak RSS of any process so far "
                    f"{rss:.0f} MiB"
                )
                if losses.total():
                    print(f"LOSS [{backend}]: {losses.summary()}")
                    for line in losses.serve_failures[:5]:
                        print("  ", line)
                total.add(losses)
            finally:
                lab.close()
    return verdict(total)


def main() -> int:
    parser = campaign_parser(__doc__)
    parser.add_argument("--bad", type=int, default=2000)
    parser.add_argument("--good", type=int, default=200)
    parser.add_argument("--odd", type=int, default=100)
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-rss-mib", type=float, default=600.0)
    args = parser.parse_args()
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    return run(args.bad, args.good, args.odd, backends, args.seed, args.max_rss_mib)


if __name__ == "__main__":
    sys.exit(main())
