"""The YAML config loader: unknown keys and wrong types fail naming file and key; paths; docs."""

from __future__ import annotations

import logging
import re
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO

from optialloc.config import CONFIG_ENV, Config, config_from_mapping, load_config
from optialloc.errors import ConfigError, ExitCode
from optialloc.queue import open_queue, store_path
from optialloc.queue.beanstalk import BeanstalkQueue
from optialloc.queue.embedded import EmbeddedQueue


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "optialloc.yaml"
    path.write_text(text)
    return str(path)


def test_unknown_key_is_an_error_naming_the_file_the_key_and_the_closest_key(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "queue_hots: example\nqueue_port: 11301\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert excinfo.value.field == "queue_hots"
    assert str(excinfo.value) == (
        f"{path}: queue_hots: unknown key; did you mean 'queue_host'?"
    )
    assert excinfo.value.exit_code == ExitCode.BAD_INPUT
    # nothing close: the docs are named instead of a guess
    with pytest.raises(ConfigError, match=r"see docs/configuration\.md"):
        load_config(write(tmp_path, "zzzzzz: 1\n"))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("queue_port: 'eleven'\n", "queue_port"),
        ("queue_port: 70000\n", "queue_port"),
        ("queue_backend: rabbitmq\n", "queue_backend"),
        ("tubes: smithi\n", "tubes"),
        ("lock_many: 'yes'\n", "lock_many"),
        ("tick_seconds: 0\n", "tick_seconds"),
        ("state_dir: 12\n", "state_dir"),
        ("queue_host: null\n", "queue_host"),
    ],
)
def test_wrong_type_is_an_error_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(write(tmp_path, text))
    assert excinfo.value.field == key
    assert str(excinfo.value).startswith(f"{tmp_path / 'optialloc.yaml'}: {key}: ")
    assert excinfo.value.exit_code == ExitCode.BAD_INPUT


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"))


def test_environment_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, write(tmp_path, "queue_backend: beanstalk\nqueue_port: 11333\n"))
    config = load_config(None)
    assert (config.queue_backend, config.queue_port) == ("beanstalk", 11333)
    # An explicit --config wins over the environment.
    other = tmp_path / "other.yaml"
    other.write_text("queue_port: 11444\n")
    assert load_config(str(other)).queue_port == 11444


def test_defaults_are_the_embedded_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("OPTIALLOC_STATE_DIR", str(tmp_path / "state"))
    config = load_config(None)
    assert config.queue_backend == "embedded"
    queue = open_queue(config)
    assert isinstance(queue, EmbeddedQueue) and not isinstance(queue, BeanstalkQueue)
    queue.close()
    assert (tmp_path / "state" / "queue.sqlite").exists()


def test_beanstalk_backend_gets_its_own_store(tmp_path: Path) -> None:
    config = config_from_mapping({"queue_backend": "beanstalk", "state_dir": str(tmp_path)})
    assert store_path(config) != store_path(Config(state_dir=str(tmp_path)))
    queue = open_queue(config)
    assert isinstance(queue, BeanstalkQueue)
    queue.close()  # opening does not connect: beanstalkd is reached on first use


@pytest.mark.parametrize("name", ["beanstalk.yaml", "embedded.yaml"])
def test_example_configs_load_cleanly(name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    config = load_config(str(FIXTURES / "config" / name))
    assert config.queue_backend == name.removesuffix(".yaml")
    assert [r.getMessage() for r in caplog.records if "unknown key" in r.getMessage()] == []


def test_every_key_is_documented() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^### `([a-z_]+)`", doc, flags=re.MULTILINE))
    assert documented == {f.name for f in fields(Config)}
