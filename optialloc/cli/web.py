"""`optialloc web`: the lab's scheduling view (status page, JSON API, /metrics) over serve's state.

Reads what `optialloc serve` keeps in the state directory (queue store,
journal, inventory, `last_tick.json`) in its own process, never writing a
scheduling decision, so it can neither block nor slow a tick. `serve` starts
it beside itself when the config sets `http_port`. See docs/web.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

from optialloc.config import Config, load_config, with_overrides
from optialloc.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080
#: How much lower the CPU priority of the web server `serve` starts is (nice): on a
#: busy machine the dispatcher's ticks come first.
SERVE_WEB_NICE = 10
#: Seconds `serve` waits for its web server to exit before killing it.
STOP_GRACE_S = 10.0

DESCRIPTION = """\
Serve the lab's scheduling view: the status page at /, the JSON API under
/api (documented by /api/openapi.json) and Prometheus metrics at /metrics,
from the state a `serve` keeps (same config). Binds http_host (default
127.0.0.1) and http_port from the config unless --host/--port are given.
Admin actions (pause/resume tubes, priorities, delete, kick) need the bearer
token in the file named by admin_token_file.

examples:
  optialloc web --port 8080
  optialloc --config lab.yaml web
  curl -s localhost:8080/api/queue?tube=smithi | jq '.jobs[0]'
"""


def handler(args: argparse.Namespace) -> int:
    import uvicorn

    from optialloc.web.app import create_app
    from optialloc.web.refresher import Refresher

    config = load_config(args.config)
    if args.state_dir is not None:
        config = with_overrides(config, state_dir=args.state_dir)
    host = args.host or config.http_host
    port = args.port if args.port is not None else config.http_port or DEFAULT_PORT
    if not 0 < port <= 65535:
        raise ConfigError("--port", f"{port} is not a TCP port (1-65535)")
    refresher = Refresher(
        config,
        interval_s=args.refresh_seconds,
        estimates=not args.no_estimates,
        parent_pid=args.parent_pid,
    )
    if args.nice:
        os.nice(args.nice)  # a view yields the CPU to the dispatcher on a shared machine
    app = create_app(config, refresher)
    print(f"optialloc web: serving {config.state_dir} on http://{host}:{port}/", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0


def start_beside(config_path: str | None, config: Config) -> subprocess.Popen[bytes] | None:
    """Start `optialloc web` as a child of this `serve` when `http_port` is set (else None)."""
    if not config.http_port:
        return None
    command = [sys.executable, "-m", "optialloc"]
    if config_path:
        command += ["--config", config_path]
    command += ["web", "--state-dir", config.state_dir, "--nice", str(SERVE_WEB_NICE)]
    command += ["--parent-pid", str(os.getpid())]
    log.info("serve: status page on http://%s:%d/", config.http_host, config.http_port)
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


def stop_beside(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "web",
        help="serve the status page, JSON API and /metrics",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="address to bind (config: http_host; default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help=f"TCP port (config: http_port; default {DEFAULT_PORT})"
    )
    parser.add_argument("--state-dir", metavar="DIR", help="state directory (config: state_dir)")
    parser.add_argument(
        "--refresh-seconds",
        type=float,
        default=1.0,
        metavar="S",
        help="how often the view is re-read from the state (default 1 s)",
    )
    parser.add_argument(
        "--no-estimates", action="store_true", help="do not compute estimated start times"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        metavar="N",
        help="lower this process's CPU priority by N (serve starts its web server with 10)",
    )
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    parser.set_defaults(func=handler, default_verbosity=1)
