"""A small JSON-over-HTTP client for paddles (stdlib urllib + tenacity).

Contract: every request has a timeout. Connection errors (refused, reset,
timed out, no answer) are retried with exponential back-off and then raised
as `BackendUnavailable` naming the URL and the config key to fix. An HTTP
error answer is never retried (a 4xx will not change) and is raised as
`PaddlesError` with its status and paddles' `message`; an HTML error page
(pecan answers some missing paths with one) becomes a clear message naming
the path, never a JSON decoding traceback.
"""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from optialloc.errors import BackendUnavailable, ConfigError, OptiallocError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_ATTEMPTS = 3


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
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                setting,
                f"{base_url!r} is not an http(s) URL: set it like http://paddles.example:8080/",
            )
        self.base_url = base_url.rstrip("/")
        self.setting = setting
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s

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
            stop=stop_after_attempt(self.attempts if retry else 1),
            wait=wait_exponential(multiplier=self.backoff_s, max=5 * self.backoff_s),
            retry=retry_if_exception_type(_Unreachable),
            reraise=False,
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._once(method, url, path, body)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise BackendUnavailable(
                f"cannot reach paddles at {self.base_url} ({method} {path}: {cause}, "
                f"{exc.last_attempt.attempt_number} attempt(s)): start it or set {self.setting}"
            ) from cause
        raise AssertionError("unreachable")  # pragma: no cover

    def _once(self, method: str, url: str, path: str, body: Any) -> Any:
        data = None if body is None else json.dumps(body, default=str).encode("utf-8")
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                raw = answer.read()
                content_type = answer.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw = exc.read() if exc.fp else b""
            content_type = exc.headers.get("Content-Type", "") if exc.headers else ""
            if exc.code in (502, 504):  # a proxy in front of paddles: the server itself may be fine
                raise _Unreachable(f"HTTP {exc.code} from a proxy") from exc
            raise PaddlesError(method, path, exc.code, _message(raw, content_type, path)) from exc
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            # OSError covers ConnectionError and TimeoutError (socket.timeout) too.
            reason = getattr(exc, "reason", None) or exc
            log.debug("paddles %s %s: %s (will retry if attempts are left)", method, url, reason)
            raise _Unreachable(str(reason) or type(exc).__name__) from exc
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            snippet = raw[:80].decode("utf-8", "replace")
            raise BackendUnavailable(
                f"paddles at {self.base_url} answered {method} {path} with something that is "
                f"not JSON ({content_type or 'no content type'}: {snippet!r}): "
                f"is {self.setting} a paddles URL?"
            ) from exc
