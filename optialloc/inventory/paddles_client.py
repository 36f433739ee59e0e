"""A small JSON-over-HTTP client for paddles (httpx + tenacity).

Contract: every request has a timeout and goes over a pool of keep-alive
connections (`httpx.Client`, safe to share between threads: the inventory
locks a tick's nodes from several threads at once). Connection errors
(refused, reset, timed out, no answer) are retried with exponential back-off
and then raised as `BackendUnavailable` naming the URL and the config key to
fix. An HTTP error answer is never retried (a 4xx will not change) and is
raised as `PaddlesError` with its status and paddles' `message`; an HTML
error page (pecan answers some missing paths with one) becomes a clear
message naming the path, never a JSON decoding traceback.

Circuit breaker: once a request found the server unreachable (after its
retries), every further request fails at once with `BackendUnavailable`,
without touching the network, until `new_round()` is called (the serve loop
calls it before each tick) or `cooldown_s` has passed; the next request is
then sent with a single attempt, without back-off, until one is answered
(closed again) or fails (open again). So an outage costs about one failed
request per tick, never a back-off sleep per job.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.parse
from typing import Any

import httpx
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from optialloc.errors import BackendUnavailable, ConfigError, OptiallocError
from optialloc.redact import redact_url

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_ATTEMPTS = 3
#: Connections kept open to one paddles (as many requests in flight at once).
POOL_SIZE = 16
#: Without `new_round()`, how long an unreachable server is not asked again (seconds).
DEFAULT_COOLDOWN_S = 10.0


class PaddlesError(OptiallocError):
    """paddles answered with an HTTP error; `status` and `message` are its answer."""

    def __init__(self, method: str, url: str, status: int, message: str) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.message = message
        super().__init__(f"paddles answered {method} {url} with HTTP {status}: {message}")


class _Unreachable(Exception):
    """A connection-level failure worth retrying (internal)."""


def _message(body: bytes, content_type: str, path: str) -> str:
    """paddles' JSON `message`, or a short description of a non-JSON error page."""
    text = body.decode("utf-8", "replace")
    if "json" in content_type or text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except ValueError:
            return text.strip()[:200]
        if isinstance(data, dict) and "message" in data:
            return str(data["message"])
        return text.strip()[:200]
    return f"an HTML/text page instead of JSON for {path} (no such path on this server?)"


class PaddlesClient:
    """JSON requests to one paddles base URL; `setting` names the config key in errors."""

    def __init__(
        self,
        base_url: str,
        *,
        setting: str = "lock_server",
        timeout: float = DEFAULT_TIMEOUT_S,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff_s: float = 0.5,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                setting,
                f"{redact_url(base_url)!r} is not an http(s) URL: set it like http://paddles.example:8080/",
            )
        # Credentials in the URL (user:password@) go to httpx as basic auth, not in the
        # URL: httpx logs every request's URL, and the password must never be logged.
        parts = urllib.parse.urlsplit(base_url)
        auth = None
        if "@" in parts.netloc:
            userinfo, _, host = parts.netloc.rpartition("@")
            user, _, password = userinfo.partition(":")
            auth = httpx.BasicAuth(urllib.parse.unquote(user), urllib.parse.unquote(password))
            base_url = urllib.parse.urlunsplit(parts._replace(netloc=host))
        self.base_url = base_url.rstrip("/")
        #: the URL as messages and logs show it: no password (`optialloc.redact`)
        self.shown_url = redact_url(self.base_url)
        if auth is not None:
            self.shown_url = redact_url(f"{parts.scheme}://{userinfo}@{host}".rstrip("/"))
        self.setting = setting
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.cooldown_s = cooldown_s
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
            headers={"Accept": "application/json"},
            auth=auth,
        )
        self._breaker = threading.Lock()
        self._down_since: float | None = None  # monotonic time the server was found away
        self._probe_due = False

    # -- the circuit breaker ------------------------------------------------------

    @property
    def down(self) -> bool:
        """True while the breaker is open (the last request found the server away)."""
        return self._down_since is not None

    def new_round(self) -> None:
        """Allow one probe now if the server was found away (called once per tick)."""
        with self._breaker:
            if self._down_since is not None:
                self._probe_due = True

    def _attempts_now(self, method: str, path: str, retry: bool) -> int:
        """How many attempts this request gets; `BackendUnavailable` if the breaker is open."""
        with self._breaker:
            if self._down_since is None:
                return self.attempts if retry else 1
            away = time.monotonic() - self._down_since
            if self._probe_due or away >= self.cooldown_s:
                # Half-open: requests get one attempt each, no back-off, until one is
                # answered (breaker closed) or one fails (open again, the rest fail fast).
                self._probe_due = True
                return 1
        raise BackendUnavailable(
            f"paddles at {self.shown_url} was unreachable {away:.0f} s ago: {method} {path} "
            f"not sent, asked again next tick (start it or set {self.setting})"
        )

    def _answered(self) -> None:
        if self._down_since is not None:
            with self._breaker:
                if self._down_since is not None:
                    log.warning("paddles at %s answers again", self.shown_url)
                self._down_since = None
                self._probe_due = False

    def _unreachable(self) -> None:
        with self._breaker:
            self._down_since = time.monotonic()
            self._probe_due = False

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def url(self, path: str, query: dict[str, object] | None = None) -> str:
        url = self.base_url + path
        if query:
            params = {
                k: str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in query.items()
                if v is not None
            }
            url += "?" + urllib.parse.urlencode(params)
        return url

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, object] | None = None,
        retry: bool = True,
    ) -> Any:
        """Send one request and return the decoded JSON answer.

        `retry=False` for a request that must not be repeated blindly (a
        lock_many that may have been applied): its connection error is raised
        as `BackendUnavailable` at once.
        """
        url = self.url(path, query)
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts_now(method, path, retry)),
            wait=wait_exponential(multiplier=self.backoff_s, max=5 * self.backoff_s),
            retry=retry_if_exception_type(_Unreachable),
            reraise=False,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(method, url, path, body)
        except RetryError as exc:
            if retry:  # one lost answer of a request never repeated says little about the server
                self._unreachable()
            cause = exc.last_attempt.exception()
            raise BackendUnavailable(
                f"cannot reach paddles at {self.shown_url} ({method} {path}: {cause}, "
                f"{exc.last_attempt.attempt_number} attempt(s)): start it or set {self.setting}"
            ) from cause
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, method: str, url: str, path: str, body: Any) -> Any:
        data = None if body is None else json.dumps(body, default=str).encode("utf-8")
        headers = {"Content-Type": "application/json"} if data is not None else None
        try:
            answer = self._http.request(method, url, content=data, headers=headers)
        except httpx.TransportError as exc:
            # refused, reset, timed out, protocol errors: worth another attempt
            log.debug(
                "paddles %s %s: %s (will retry if attempts are left)", method, redact_url(url), exc
            )
            raise _Unreachable(str(exc) or type(exc).__name__) from exc
        raw = answer.content
        content_type = answer.headers.get("Content-Type", "")
        self._answered()
        if answer.status_code in (502, 504):  # a proxy in front of paddles: the server may be fine
            raise _Unreachable(f"HTTP {answer.status_code} from a proxy")
        if answer.status_code >= 400:
            raise PaddlesError(method, path, answer.status_code, _message(raw, content_type, path))
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            snippet = raw[:80].decode("utf-8", "replace")
            raise BackendUnavailable(
                f"paddles at {self.shown_url} answered {method} {path} with something that is "
                f"not JSON ({content_type or 'no content type'}: {snippet!r}): "
                f"is {self.setting} a paddles URL?"
            ) from exc
