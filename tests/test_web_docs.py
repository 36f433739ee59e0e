"""docs/web.md's API reference is the one the app's OpenAPI document gives."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_api_reference_matches_the_openapi_document() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/web_api_doc.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
