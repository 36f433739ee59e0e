"""optialloc's configuration file (YAML), with teuthology's key names where they exist.

Found via `--config FILE` or `OPTIALLOC_CONFIG`; with neither, every key takes
its default, which is the embedded lab (SQLite queue and inventory, demo lab,
command runner). An unknown key is an error naming the file, the key and the
closest known key; a value of the wrong type is an error naming the file and
the key. Relative paths in a config file are relative to that file's
directory; `policy` and `lab` may also name a shipped model or lab
(`optialloc.resources`). Every key is documented in docs/configuration.md.
"""

from __future__ import annotations

import difflib
import logging
import os
import socket
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from optialloc.errors import ConfigError
from optialloc.redact import redact_url
from optialloc.resources import resolve_file
from optialloc.yaml_errors import describe_yaml_error

log = logging.getLogger(__name__)

CONFIG_ENV = "OPTIALLOC_CONFIG"
#: Keys holding a filesystem path: resolved against the config file's directory.
PATH_KEYS = (
    "state_dir",
    "lab",
    "policy",
    "archive_base",
    "teuthology_bin_path",
    "admin_token_file",
)


def default_state_dir() -> str:
    """`$OPTIALLOC_STATE_DIR`, else `$XDG_STATE_HOME/optialloc`, else `~/.local/state/optialloc`."""
    if os.environ.get("OPTIALLOC_STATE_DIR"):
        return os.environ["OPTIALLOC_STATE_DIR"]
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return os.path.join(base, "optialloc")


def default_locked_by() -> str:
    return f"optialloc@{socket.gethostname()}"


@dataclass(frozen=True)
class Config:
    """Validated settings. Field names are the YAML keys."""

    # job queue (teuthology: queue_host, queue_port)
    queue_backend: str = "embedded"  # "embedded" (SQLite in state_dir) or "beanstalk"
    queue_host: str = "127.0.0.1"
    queue_port: int = 11300
    tubes: list[str] = field(default_factory=list)  # empty: every tube beanstalkd has
    # inventory and locks (teuthology: lock_server)
    lock_server: str | None = None  # paddles URL; None: the embedded inventory
    lock_many: bool = False  # paddles: lock by count with lock_many instead of exact nodes
    lab: str | None = None  # lab YAML imported into the embedded inventory when it is empty
    locked_by: str = field(default_factory=default_locked_by)
    # results (teuthology: results_server)
    results_server: str | None = None  # paddles URL for job status; None: not reported
    # dispatcher
    state_dir: str = field(default_factory=default_state_dir)
    policy: str = "default"  # a shipped model name (default, throughput) or a YAML path
    tick_seconds: float = 10.0
    # runner (teuthology: archive_base, max_job_time)
    runner: str = "command"  # "command" or "teuthology"
    runner_command: str = "sleep 1"  # template: {job_id} {run} {nodes} {archive_path} {config_path}
    archive_base: str | None = None  # default: <state_dir>/archive
    teuthology_bin_path: str | None = None  # directory holding teuthology-supervisor
    ssh_user: str = "ubuntu"  # user in the targets written to orig.config.yaml
    max_job_time: int = 259200  # seconds; teuthology's default (3 days)
    progress_timeout: int | None = None  # seconds without log growth before a job is killed
    kill_grace_seconds: float = 30.0
    mark_down_on_failure: bool = False
    on_runner_signal: str = "bury"  # job's command ended by a signal: "bury" or "retry"
    # status page and JSON API
    http_host: str = "127.0.0.1"
    http_port: int | None = None  # None: no status server
    admin_token_file: str | None = None  # file holding the web admin bearer token; None: no admin
    pulpito_url: str | None = None  # pulpito's base URL: the page links runs and jobs there

    @property
    def archive_dir(self) -> str:
        return self.archive_base or os.path.join(self.state_dir, "archive")

    @property
    def policy_path(self) -> str:
        """The policy file: a shipped model for a bare name, else the path."""
        return resolve_file("models", self.policy)

    @property
    def lab_path(self) -> str:
        """The lab file the embedded inventory imports when empty (default: the demo lab)."""
        return resolve_file("labs", self.lab or "demo")


def short_path(path: str) -> str:
    """An absolute path, with the home directory shown as `~` (for messages)."""
    path = os.path.abspath(path)
    home = str(Path.home())
    if path == home or path.startswith(home + os.sep):
        return "~" + path[len(home) :]
    return path


def describe_queue(config: Config) -> str:
    """Where `config`'s jobs are queued, for the one line a state-writing command prints."""
    if config.queue_backend == "beanstalk":
        return (
            f"beanstalkd {config.queue_host}:{config.queue_port} "
            f"(store in {short_path(config.state_dir)})"
        )
    return f"{short_path(config.state_dir)} (embedded queue)"


def describe_inventory(config: Config) -> str:
    """Where `config`'s nodes and locks live (paddles URL or the embedded state dir)."""
    if config.lock_server:
        return f"paddles {redact_url(config.lock_server)}"
    return f"{short_path(config.state_dir)} (embedded inventory)"


_CHOICES = {
    "queue_backend": ("embedded", "beanstalk"),
    "runner": ("command", "teuthology"),
    "on_runner_signal": ("bury", "retry"),
}


def _check_type(key: str, value: Any, annotation: str) -> Any:
    """Check one value against its field's annotation (a string under PEP 563)."""
    optional = "None" in annotation
    if value is None:
        if optional:
            return None
        raise ConfigError(key, f"must not be null (expected {annotation.replace(' | None', '')})")
    base = annotation.replace(" | None", "")
    if base == "bool":
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
    elif base == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        if value < 0:
            raise ConfigError(key, f"must be >= 0, got {value}")
    elif base == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(key, f"expected a number, got {value!r}")
        if value < 0:
            raise ConfigError(key, f"must be >= 0, got {value}")
        value = float(value)
    elif base == "str":
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
    elif base == "list[str]" and (
        not isinstance(value, list) or not all(isinstance(v, str) for v in value)
    ):
        raise ConfigError(key, f"expected a list of strings, got {value!r}")
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(key, f"{value!r} is not one of {', '.join(_CHOICES[key])}")
    return value


def _unknown_key(source: str, key: object, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "see docs/configuration.md for every key"
    return ConfigError(str(key), f"unknown key; {hint}", source)


def _resolve_paths(values: dict[str, Any], base_dir: str) -> None:
    """Make the relative paths of a config file relative to its directory (in place)."""
    for key in PATH_KEYS:
        value = values.get(key)
        if not isinstance(value, str):
            continue
        kind = {"policy": "models", "lab": "labs"}.get(key)
        if kind is not None:
            values[key] = resolve_file(kind, value, base_dir)
        else:
            values[key] = os.path.join(base_dir, os.path.expanduser(value))


def config_from_mapping(
    data: dict[str, Any], *, source: str = "config", base_dir: str | None = None
) -> Config:
    """Validate a mapping of settings; errors name `source` (the file) and the key.

    With `base_dir` (the config file's directory), relative paths are resolved
    against it; without, they stay relative to the current directory.
    """
    known = {f.name: f for f in fields(Config)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise _unknown_key(source, key, list(known))
        try:
            values[key] = _check_type(key, value, str(known[key].type))
        except ConfigError as exc:
            raise ConfigError(key, exc.problem, source) from None
    if base_dir is not None:
        _resolve_paths(values, base_dir)
    config = Config(**values)
    if config.tick_seconds <= 0:
        raise ConfigError("tick_seconds", "must be > 0 seconds", source)
    if config.queue_port == 0 or config.queue_port > 65535:
        raise ConfigError(
            "queue_port", f"{config.queue_port} is not a TCP port (1-65535)", source
        )
    if config.http_port is not None and not 0 < config.http_port <= 65535:
        raise ConfigError("http_port", f"{config.http_port} is not a TCP port (1-65535)", source)
    if config.runner == "teuthology" and not config.teuthology_bin_path:
        log.info("runner teuthology: teuthology-supervisor is looked up on PATH")
    return config


def load_config(path: str | None = None) -> Config:
    """Load the config from `path`, else `$OPTIALLOC_CONFIG`, else the defaults."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return Config()
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except FileNotFoundError as exc:
        raise ConfigError(
            "--config", f"{path} does not exist: pass an existing file or unset {CONFIG_ENV}"
        ) from exc
    except IsADirectoryError as exc:
        raise ConfigError("--config", f"{path} is a directory: pass the config file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(
            "--config", f"{path} is not valid YAML ({describe_yaml_error(exc)})"
        ) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            "--config", f"{path} must hold a mapping of keys, got {type(data).__name__}"
        )
    return config_from_mapping(
        data, source=path, base_dir=os.path.dirname(os.path.abspath(path))
    )


def with_overrides(config: Config, **overrides: Any) -> Config:
    """A copy of `config` with some keys replaced (validated like the file's)."""
    known = {f.name: f for f in fields(Config)}
    checked = {k: _check_type(k, v, str(known[k].type)) for k, v in overrides.items()}
    return replace(config, **checked)
