"""Issue 16, security: YAML always loaded safely; credentials never in messages or logs.

(Archive paths never leaving archive_base: tests/test_bad_jobs.py.)
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from conftest import REPO, free_port
from inventory_support import fill_paddles
from paddles_server import FakePaddles

from optialloc.config import Config, describe_inventory
from optialloc.errors import BackendUnavailable, ConfigError
from optialloc.inventory.paddles_client import PaddlesClient
from optialloc.redact import redact_url

# A YAML load that may build arbitrary objects: yaml.load / load_all without a
# Safe loader, full_load, unsafe_load, or naming an unsafe loader at all.
UNSAFE = re.compile(
    r"yaml\.(unsafe_load|full_load|load_all)\b|\b(Unsafe|Full)Loader\b|Loader=yaml\.Loader\b"
    r"|(?<![\w.])yaml\.load\((?![^)]*Loader=)"
)


def test_no_unsafe_yaml_loading_anywhere_in_the_package() -> None:
    found = []
    for path in sorted((REPO / "optialloc").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if UNSAFE.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
            for loader in re.findall(r"Loader=([\w.]+)", line):
                if "Safe" not in loader and not loader.startswith("_"):
                    found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert found == []


def test_module_level_loaders_are_safe() -> None:
    import yaml

    from optialloc.queue import beanstalk, fast_yaml
    from optialloc.snapshots import io

    for loader in (beanstalk._STATS_LOADER, io._Loader, fast_yaml._CLoader):
        assert issubclass(loader, (yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://bob:s3cret@paddles:8080/", "http://bob:***@paddles:8080/"),
        ("https://t0ken@paddles/", "https://***@paddles/"),
        ("http://paddles:8080", "http://paddles:8080"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_lock_server_credentials_never_in_errors_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://bob:s3cret@127.0.0.1:{free_port()}/"
    client = PaddlesClient(url, attempts=2, backoff_s=0.01, timeout=1.0)
    with caplog.at_level(logging.DEBUG), pytest.raises(BackendUnavailable) as err:
        client.request("GET", "/nodes/")
    assert "s3cret" not in str(err.value) and "bob:***@" in str(err.value)
    assert "s3cret" not in caplog.text
    config = Config(state_dir=str(tmp_path), lock_server=url)
    assert "s3cret" not in describe_inventory(config)
    with FakePaddles() as paddles:  # answered requests: httpx logs them at INFO
        fill_paddles(paddles)
        ok = PaddlesClient(paddles.url.replace("http://", "http://bob:s3cret@"))
        with caplog.at_level(logging.DEBUG):
            assert ok.request("GET", "/nodes/")
    assert "s3cret" not in caplog.text
    with pytest.raises(ConfigError) as bad:
        PaddlesClient("ftp://bob:s3cret@paddles/")
    assert "s3cret" not in str(bad.value)
