"""A paddles look-alike for tests: a real HTTP server on 127.0.0.1 with in-memory state.

It behaves as teuthology-interfaces.md section 3 documents paddles, sharp
edges included: JSON errors `{"message": ...}`; 503 `only N nodes available`
from lock_many; a per-node lock that is idempotent for the same locked_by and
description and 403 otherwise; per-node locks that, like paddles, do not
check `up`; 403 on unlock with another locked_by or description and on an
already-unlocked node; `unlock_many` that commits node by node and fails
half-way; HTML 404 pages for unknown paths. Switches simulate contention
(`busy_lock_many`, `race_lock`), HTML 404s for missing nodes (`html_node_404`) and a server
that stops answering mid-lock (`stall_after_locks`). Job reports to
`/runs/<run>/jobs/` are kept in `jobs` and `reports` for assertions.
"""

from __future__ import annotations

import json
import random
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

    def __init__(self) -> None:
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
        self.lock_calls = 0
        self._stalled = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
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
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

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
            verb = "lock" if body.get("locked") else "unlock"
            raise Refusal(404, f"attempted to {verb} a non-existent node")
        node = self.nodes[name]
        locking = body.get("locked")
        who = body.get("locked_by")
        description = body.get("description")
        if locking not in (True, False):
            return dict(node)
        if not who:
            raise Refusal(400, "Cannot lock without specifying locked_by")
        if locking:
            if name in self.race_lock:
                thief, why = self.race_lock.pop(name)
                node.update(locked=True, locked_by=thief, description=why, locked_since=_now())
            if node["locked"]:
                if node["locked_by"] == who and node["description"] == description:
                    return self._lock_answer(node)
                raise Refusal(403, "Cannot lock an already-locked node")
            # Like paddles, a per-node lock does not look at `up`.
            node.update(locked=True, locked_by=who, description=description, locked_since=_now())
            return self._lock_answer(node)
        if not node["locked"]:
            raise Refusal(403, "Cannot unlock an already-unlocked node")
        if node["locked_by"] != who:
            raise Refusal(403, "Cannot unlock - locked_by values must match")
        if node["description"] != description:
            raise Refusal(403, "Cannot unlock - description does not match")
        node.update(locked=False, locked_by=None, description=None, locked_since=None)
        return self._lock_answer(node)

    @staticmethod
    def _lock_answer(node: dict[str, Any]) -> dict[str, Any]:
        return {k: node[k] for k in ("name", "locked", "locked_by", "machine_type", "is_vm")}

    def _lock_many(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        required = ("count", "locked_by", "machine_type", "description")
        if any(key not in body for key in required):
            raise Refusal(400, "must pass these fields: " + ", ".join(required))
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
        recycled = [
            n
            for n in fits
            if n["locked_by"] == body["locked_by"]
            and n["description"] == body["description"]
            and n["locked"]
        ]
        if len(recycled) >= count:
            return [dict(n) for n in recycled[:count]]
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
        done = []
        for name in body[
            "names"
        ]:  # one commit per node: a failure leaves the earlier ones unlocked
            node = self.nodes.get(name)
            if node is None:
                raise Refusal(400, f"node {name} not found")
            if node["locked_by"] != body["locked_by"]:
                raise Refusal(403, f"Cannot unlock {name} - locked_by values must match")
            node.update(locked=False, locked_by=None, description=None, locked_since=None)
            done.append(dict(node))
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
        job = dict(body, name=run, posted=_now(), updated=_now())
        if job.get("status") == "running":
            job["started"] = _now()
        self.jobs[(run, job_id)] = job
        return {}

    def _job_put(self, run: str, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        job = self.jobs.get((run, job_id))
        if job is None:
            raise Refusal(404, "job not found")
        if job.get("status") in FINAL and body.get("status") not in (None, *FINAL):
            body = {k: v for k, v in body.items() if k != "status"}  # pass/fail are final
        if body.get("status") == "running" and job.get("status") != "running":
            job["started"] = _now()
        job.update(body, updated=_now())
        return {}

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
                    self.nodes[parts[1]].update(
                        {k: v for k, v in (body or {}).items() if k in NODE_KEYS}
                    )
                    return {}
                if method == "DELETE":
                    self._node(parts[1])
                    del self.nodes[parts[1]]
                    return {}
            elif len(parts) == 3 and parts[2] == "lock" and method in ("PUT", "POST"):
                return self._lock_one(parts[1], body or {})
        if parts[0] == "runs" and len(parts) >= 3 and parts[2] == "jobs":
            if len(parts) == 3 and method == "POST":
                return self._job_post(parts[1], body or {})
            if len(parts) == 4 and method == "PUT":
                return self._job_put(parts[1], parts[3], body or {})
            if len(parts) == 4 and method == "GET":
                job = self.jobs.get((parts[1], parts[3]))
                if job is None:
                    raise Refusal(404, "job not found")
                return job
        raise Refusal(404, "HTML")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def _serve(self) -> None:
                split = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(split.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                method = self.command
                fake.requests.append((method, split.path))
                is_lock = split.path.endswith("/lock_many/") or (
                    split.path.endswith("/lock") and b'"locked": true' in raw
                )
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
                        if path.startswith("/runs/") and method in ("POST", "PUT"):
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
