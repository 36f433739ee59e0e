"""Runners: how a dispatched job is started, watched and ended (the `Runner` port).

`open_runner(config)` picks one from the config's `runner` key: `command`
(a command template, see `optialloc.runners.command`) or `teuthology`
(`teuthology-supervisor`, see `optialloc.runners.teuthology`).
"""

from __future__ import annotations

from optialloc.config import Config
from optialloc.runners.command import CommandRunner
from optialloc.runners.process import LaunchFailed, ProcessRunner
from optialloc.runners.teuthology import TeuthologyRunner

__all__ = ["CommandRunner", "LaunchFailed", "ProcessRunner", "TeuthologyRunner", "open_runner"]


def open_runner(config: Config) -> ProcessRunner:
    """The runner the config names (`runner: command` or `runner: teuthology`)."""
    if config.runner == "teuthology":
        return TeuthologyRunner(
            archive_base=config.archive_dir,
            bin_path=config.teuthology_bin_path,
            ssh_user=config.ssh_user,
        )
    return CommandRunner(config.runner_command, ssh_user=config.ssh_user)
