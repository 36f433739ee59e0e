"""Keep credentials out of logs and messages: URLs are shown without their password.

`lock_server` and `results_server` may carry basic-auth credentials
(`http://user:secret@paddles:8080/`, which httpx sends as basic auth). Every
message or log line that names such a server shows `redact_url(url)`
(`http://user:***@paddles:8080/`) instead; `tests/test_security.py` checks it.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """`url` with the password (and any token in the user part) replaced by `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user, sep, _secret = userinfo.partition(":")
    shown = f"{user}:***" if sep else "***"
    return urlunsplit(parts._replace(netloc=f"{shown}@{host}"))
