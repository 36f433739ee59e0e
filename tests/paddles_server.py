"""A paddles look-alike for tests: a real HTTP server on 127.0.0.1 with in-memory state.

Its lock rules are paddles' own (`Node._check_for_update` and `Node.lock_many`
in paddles/models/nodes.py, the controllers in paddles/controllers/nodes.py),
messages included: JSON errors `{"message": ...}`; a per-node lock that is
idempotent for the same locked_by and description and 403 `Cannot lock an
already-locked node` otherwise; 403 `Cannot unlock - locked_by values must
match` / `Cannot unlock - description values must match` on an unlock by
another locked_by or for another description; 403 `Cannot unlock an
already-unlocked node`; 400 `Cannot lock without specifying locked_by`;
per-node locks that, like paddles, do not check `up`; an unlock that clears
locked_by but keeps the description it was given, as paddles does; lock_many
that takes free `up` nodes or answers 503 `only N nodes available`;
`unlock_many` that commits node by node and fails half-way; HTML 404 pages for
unknown paths. It speaks HTTP/1.1 keep-alive. Switches simulate contention
(`busy_lock_many`, `race_lock`), HTML 404s for missing nodes
(`html_node_404`), a server that stops answering mid-lock
(`stall_after_locks`) and network latency (`delay_s`, added to every
request). Job reports to `/runs/<run>/jobs/` are kept in `jobs` (paddles'
rules: POST creates, 400 `job with job_id N already exists`, PUT updates,
`success` from the status, pass/fail final) and `reports` for assertions;
`GET /runs/queued/` lists the runs with queued jobs (pulpito's "The Queue");
`stop()` then `restart()` is an outage on the same port that keeps the records.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

NODE_KEYS = (
    "arch",
    "description",
    "os_type",
    "os_version",
    "is_vm",
    "locked",
    "locked_by",
    "mac_address",
    "machine_type",
    "ssh_pub_key",
    "up",
    "vm_host",
)
FINAL = ("pass", "fail")
SUCCESS = {"pass": True, "fail": False, "dead": False}  # paddles' success_map

HTML_404 = (
    b"<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1>"
    b"<p>The resource could not be found.</p></body></html>"
)


class Refusal(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ")


def _flag(value: str) -> bool:
    return value.lower() in ("true", "1", "yes")


class FakePaddles:
    """The server and its state; `url` is its base URL. Use `with FakePaddles() as p:`."""

    def __init__(self, port: int = 0) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.reports: list[tuple[str, str, dict[str, Any]]] = []
        self.requests: list[tuple[str, str]] = []
        self.mutex = threading.Lock()
        # switches
        self.busy_lock_many = 0  # the next N lock_many calls answer 403 (contention)
        # node -> (locked_by, description): somebody else locks the node just before
        # our next lock call on it arrives (a race lost between reading and locking)
        self.race_lock: dict[str, tuple[str, str]] = {}
        self.html_node_404 = False  # GET /nodes/<missing>/ answers an HTML 404 page
        self.stall_after_locks: int | None = None  # lock calls answered before the server stalls
        self.stall_mode = "close"  # "close": drop the connection; "hang": say nothing for hang_s
        self.stall_requests: int | None = None  # requests dropped once stalled; None: until cleared
        self.stall_applies_lock = True  # the lock call that triggers the stall is applied first
        self.hang_s = 2.0
        self.delay_s = 0.0  # added to every request, outside the state mutex (latency)
        # every request answers 503 until this time.monotonic() (paddles down behind its
        # proxy, or overloaded): an outage that answers instead of dropping connections
        self.unavailable_until = 0.0
        self.lock_calls = 0
        self._stalled = False
        self._connections: set[socket.socket] = set()  # open client connections
        self._conn_mutex = threading.Lock()
        self._bind(port)

    def _bind(self, port: int) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- lifecycle -----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakePaddles:
        self._thread.start()
        self._serving = True
        return self

    def stop(self) -> None:
        if not getattr(self, "_serving", False):
            return  # already stopped (shutdown() would wait forever)
        self._serving = False
        self._server.shutdown()
        self._server.server_close()
        # Like a paddles that went away: its open keep-alive connections die with it.
        with self._conn_mutex:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)

    def restart(self) -> FakePaddles:
        """Listen again on the same port after `stop()`, with the same records (an outage
        of the server, not a loss of its database)."""
        self._bind(self._server.server_address[1])
        return self.start()

    def __enter__(self) -> FakePaddles:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test helpers -----------------------------------------------------------

    def add_node(self, name: str, machine_type: str, **attrs: Any) -> None:
        node = {
            "name": name,
            "machine_type": machine_type,
            "up": True,
            "locked": False,
            "locked_by": None,
            "locked_since": None,
            "description": None,
            "is_vm": False,
            "vm_host": None,
            "os_type": None,
            "os_version": None,
            "arch": None,
            "mac_address": None,
            "ssh_pub_key": None,
        }
        node.update(attrs)
        self.nodes[name] = node

    def unstall(self) -> None:
        with self.mutex:
            self.stall_after_locks = None
            self._stalled = False

    def locked_nodes(self) -> dict[str, tuple[str | None, str | None]]:
        with self.mutex:
            return {
                n: (d["locked_by"], d["description"]) for n, d in self.nodes.items() if d["locked"]
            }

    # -- stalling ---------------------------------------------------------------

    def _should_drop(self, is_lock: bool) -> tuple[bool, bool]:
        """(drop this request, apply it first); counts lock calls and arms the stall."""
        with self.mutex:
            if self._stalled:
                if self.stall_requests is not None:
                    self.stall_requests -= 1
                    if self.stall_requests < 0:
                        self._stalled = False
                        self.stall_after_locks = None
                        return False, False
                return True, False
            if is_lock:
                if self.stall_after_locks is not None and self.lock_calls >= self.stall_after_locks:
                    self._stalled = True
                    return True, self.stall_applies_lock
                self.lock_calls += 1
            return False, False

    # -- the API ------------------------------------------------------------------

    def _node(self, name: str) -> dict[str, Any]:
        node = self.nodes.get(name)
        if node is None:
            raise Refusal(404, "node not found")
        return node

    def _lock_one(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if name not in self.nodes:
            raise Refusal(404, "node not found")
        node = self.nodes[name]
        if body.get("locked") is True and name in self.race_lock:
            thief, why = self.race_lock.pop(name)
            node.update(locked=True, locked_by=thief, description=why, locked_since=_now())
        self._update(node, body)
        return self._lock_answer(node)

    @staticmethod
    def _check_for_update(node: dict[str, Any], values: dict[str, Any]) -> None:
        """paddles' `Node._check_for_update`, rule for rule and message for message."""
        locking = values.get("locked")
        if locking not in (True, False):
            return
        desc = values.get("description")
        to_lock_for = values.get("locked_by")
        verb = "lock" if locking else "unlock"
        if node["locked"] == locking:
            if node["locked_by"] != to_lock_for or desc is None or desc != node["description"]:
                raise Refusal(403, f"Cannot {verb} an already-{verb}ed node")
        elif not to_lock_for:
            raise Refusal(400, f"Cannot {verb} without specifying locked_by")
        elif verb == "unlock" and to_lock_for != node["locked_by"]:
            raise Refusal(403, f"Cannot {verb} - locked_by values must match")
        elif verb == "unlock" and desc and desc != node["description"]:
            raise Refusal(403, f"Cannot {verb} - description values must match")

    def _update(self, node: dict[str, Any], values: dict[str, Any]) -> None:
        """paddles' `Node.update`: check, then set the allowed keys (an unlock keeps the
        description it was given and clears locked_by). Like paddles, `up` is not checked."""
        self._check_for_update(node, values)
        was_locked = node["locked"]
        node.update({k: v for k, v in values.items() if k in NODE_KEYS})
        if "locked" in values:
            if node["locked"] != was_locked:
                node["locked_since"] = _now() if node["locked"] else None
            if not node["locked"]:
                node["locked_by"] = None

    @staticmethod
    def _lock_answer(node: dict[str, Any]) -> dict[str, Any]:
        return {k: node[k] for k in ("name", "locked", "locked_by", "machine_type", "is_vm")}

    def _lock_many(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        required = ("count", "locked_by", "machine_type", "description")
        if any(key not in body for key in required):
            raise Refusal(400, "must pass these fields: " + ", ".join(required))
        if not body["machine_type"]:
            raise Refusal(400, "must specify machine_type")
        if self.busy_lock_many > 0:
            self.busy_lock_many -= 1
            raise Refusal(403, "Cannot lock an already-locked node")
        count = body["count"]
        if not isinstance(count, int) or count < 1:
            raise Refusal(400, "cannot lock less than 1 node")
        types = str(body["machine_type"]).split("|")
        fits = [
            n
            for n in self.nodes.values()
            if n["machine_type"] in types
            and n["up"]
            and all(not body.get(k) or n[k] == body[k] for k in ("os_type", "os_version", "arch"))
        ]
        # paddles (since 2023) no longer recycles a locker's nodes: free ones only
        free = [n for n in fits if not n["locked"]]
        if len(free) < count:
            raise Refusal(503, f"only {len(free)} nodes available")
        chosen = random.sample(free, count)  # paddles picks in no set order
        for n in chosen:
            n.update(
                locked=True,
                locked_by=body["locked_by"],
                description=body["description"],
                locked_since=_now(),
            )
        return [dict(n) for n in chosen]

    def _unlock_many(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        if sorted(body) != ["locked_by", "names"]:
            raise Refusal(400, "must pass these fields: names, locked_by")
        if any(name not in self.nodes for name in body["names"]):
            raise Refusal(400, "Could not find all nodes!")
        done = []
        for name in body["names"]:  # one commit per node: a failure leaves earlier ones unlocked
            node = self.nodes[name]
            self._update(node, {"locked": False, "locked_by": body["locked_by"]})
            done.append(self._lock_answer(node))
        return done

    def _list(self, query: dict[str, str]) -> list[dict[str, Any]]:
        found = list(self.nodes.values())
        if "locked" in query:
            found = [n for n in found if n["locked"] == _flag(query["locked"])]
        if "up" in query:
            found = [n for n in found if n["up"] == _flag(query["up"])]
        if query.get("machine_type"):
            types = query["machine_type"].split("|")
            found = [n for n in found if n["machine_type"] in types]
        for key in ("os_type", "os_version", "locked_by"):
            if query.get(key):
                found = [n for n in found if n[key] == query[key]]
        if "count" in query:
            if not query["count"].isdigit():
                raise Refusal(400, "count must be a number")
            found = found[: int(query["count"])]
        return [dict(n) for n in found]

    def _job_post(self, run: str, body: dict[str, Any]) -> dict[str, Any]:
        job_id = str(body.get("job_id", ""))
        if not job_id:
            raise Refusal(400, "job_id is required")
        if (run, job_id) in self.jobs:
            raise Refusal(400, f"job with job_id {job_id} already exists")
        job: dict[str, Any] = {"posted": _now(), "success": None, "started": None}
        self._set_job(job, dict(body, name=run))
        self.jobs[(run, job_id)] = job
        return {}

    def _job_put(self, run: str, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get((run, job_id))
        if job is None:
            raise Refusal(404, "job not found")
        self._set_job(job, dict(body))
        return {}

    @staticmethod
    def _set_job(job: dict[str, Any], body: dict[str, Any]) -> None:
        """paddles' `Job.set_or_update`: `success` follows the status (None while queued,
        waiting or running); pass and fail are final (a later status is ignored); `started`
        is set on the move to running unless the reporter gives it."""
        status = body.pop("status", None)
        if status is not None and job.get("status") not in FINAL:
            if status == "running" and job.get("status") != "running" and not job.get("started"):
                job["started"] = _now()
            job["status"] = status
            job["success"] = SUCCESS.get(status)
        body.pop("success", None)  # paddles derives it from the status
        job.update(body, updated=_now())

    def _runs(self) -> dict[str, list[dict[str, Any]]]:
        runs: dict[str, list[dict[str, Any]]] = {}
        for (run, _), job in self.jobs.items():
            runs.setdefault(run, []).append(job)
        return runs

    @staticmethod
    def _run_json(name: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
        results: dict[str, int] = {}
        for job in jobs:
            results[str(job.get("status"))] = results.get(str(job.get("status")), 0) + 1
        if results.get("running") or results.get("waiting"):
            status = "running"
        elif results.get("queued"):
            status = "queued"
        else:
            status = "finished"
        return {
            "name": name,
            "status": status,
            "results": results,
            "jobs_count": len(jobs),
            "posted": min(str(j.get("posted")) for j in jobs),
        }

    def queued_runs(self) -> list[dict[str, Any]]:
        """`GET /runs/queued/` (pulpito's "The Queue"): runs with at least one queued job."""
        return [
            self._run_json(name, jobs)
            for name, jobs in sorted(self._runs().items())
            if any(j.get("status") == "queued" for j in jobs)
        ]

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        """Answer one request (called with `mutex` held); raise `Refusal` for errors."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[0] == "nodes":
            if len(parts) == 1:
                if method == "GET":
                    return self._list(query)
                if method == "POST":
                    name = (body or {}).get("name")
                    if not name:
                        raise Refusal(400, "could not find required key: 'name'")
                    if name in self.nodes:
                        raise Refusal(400, f"Node with name {name} already exists")
                    self.add_node(
                        name,
                        body.get("machine_type"),
                        **{k: v for k, v in body.items() if k in NODE_KEYS},
                    )
                    return {}
            elif len(parts) == 2 and parts[1] == "machine_types" and method == "GET":
                return sorted({n["machine_type"] for n in self.nodes.values()})
            elif len(parts) == 2 and parts[1] == "lock_many" and method == "POST":
                return self._lock_many(body or {})
            elif len(parts) == 2 and parts[1] == "unlock_many" and method == "POST":
                return self._unlock_many(body or {})
            elif len(parts) == 2:
                if method == "GET":
                    if parts[1] not in self.nodes and self.html_node_404:
                        raise Refusal(404, "HTML")
                    return dict(self._node(parts[1]))
                if method == "PUT":
                    if parts[1] not in self.nodes:
                        raise Refusal(404, "attempted to update a non-existent node")
                    self._update(self.nodes[parts[1]], body or {})
                    return {}
                if method == "DELETE":
                    self._node(parts[1])
                    del self.nodes[parts[1]]
                    return {}
            elif len(parts) == 3 and parts[2] == "lock" and method in ("PUT", "POST"):
                return self._lock_one(parts[1], body or {})
        if parts[0] == "runs" and len(parts) == 2 and parts[1] == "queued" and method == "GET":
            return self.queued_runs()
        if parts[0] == "runs" and len(parts) == 2 and method == "GET":
            jobs = self._runs().get(parts[1])
            if jobs is None:
                raise Refusal(404, "requested run resource does not exist")
            return dict(self._run_json(parts[1], jobs), jobs=jobs)
        if parts[0] == "runs" and len(parts) >= 3 and parts[2] == "jobs":
            if len(parts) == 3 and method == "GET":
                return self._runs().get(parts[1], [])
            if len(parts) == 3 and method == "POST":
                return self._job_post(parts[1], body or {})
            if len(parts) == 4 and method == "PUT":
                return self._job_put(parts[1], parts[3], body or {})
            if len(parts) == 4 and method == "GET":
                job = self.jobs.get((parts[1], parts[3]))
                if job is None:
                    raise Refusal(404, "job not found")
                return job
            if len(parts) == 4 and method == "DELETE":  # teuthology's try_delete_jobs
                if self.jobs.pop((parts[1], parts[3]), None) is None:
                    raise Refusal(404, "job not found")
                return {}
        raise Refusal(404, "HTML")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as paddles behind its web server

            def setup(self) -> None:
                super().setup()
                with fake._conn_mutex:
                    fake._connections.add(self.connection)

            def finish(self) -> None:
                with fake._conn_mutex:
                    fake._connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            # headers and body go out in two writes: without TCP_NODELAY, Nagle holds the
            # body until the client's delayed ACK (~40 ms per request on loopback)
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _serve(self) -> None:
                split = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                method = self.command
                fake.requests.append((method, split.path))
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                is_lock = split.path.endswith("/lock_many/") or (
                    split.path.endswith("/lock") and b'"locked": true' in raw
                )
                if time.monotonic() < fake.unavailable_until:
                    data = b'{"message": "503 Service Unavailable"}'
                    self.send_response(503)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                drop, apply_first = fake._should_drop(is_lock)
                if drop:
                    if apply_first:
                        self._answer(method, split.path, query, raw, send=False)
                    if fake.stall_mode == "hang":
                        time.sleep(fake.hang_s)
                    self.close_connection = True
                    return  # no answer at all: the client sees a reset or a time-out
                self._answer(method, split.path, query, raw)

            def _answer(
                self, method: str, path: str, query: dict[str, str], raw: bytes, send: bool = True
            ) -> None:
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    status, payload = 400, {"message": "could not decode JSON body"}
                else:
                    with fake.mutex:
                        if path.startswith("/runs/") and method in ("POST", "PUT", "DELETE"):
                            fake.reports.append((method, path, body or {}))
                        try:
                            status, payload = 200, fake.route(method, path, query, body)
                        except Refusal as exc:
                            status, payload = exc.status, {"message": exc.message}
                if not send:
                    return
                if status == 404 and payload == {"message": "HTML"}:
                    self.send_response(404)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(HTML_404)))
                    self.end_headers()
                    self.wfile.write(HTML_404)
                    return
                data = json.dumps(payload, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler
