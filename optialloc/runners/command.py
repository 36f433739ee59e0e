"""The command runner: run a command template from the config for each job.

This is what labs that run something other than teuthology, the demo and the
tests use. `runner_command` is split like a shell command line (no shell
runs it), then each word is formatted with these placeholders:

- `{job_id}`, `{run}`, `{archive_path}`, `{config_path}` (orig.config.yaml)
- `{nodes}`: the node names, comma-separated
- `{body[FIELD]}`: any field of the job's body, e.g. `sleep {body[duration]}`

The command runs in the job's own process group with stdout and stderr
appended to `<archive_path>/output.log`, whose growth is the job's progress.
"""

from __future__ import annotations

import shlex
import string
from collections.abc import Sequence

from optialloc.domain import Job, Node
from optialloc.errors import ConfigError
from optialloc.runners.process import LaunchFailed, ProcessRunner

PLACEHOLDERS = ("job_id", "run", "nodes", "archive_path", "config_path", "body")


def check_template(template: str) -> list[str]:
    """Split and check a command template; raises ConfigError naming the bad placeholder."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise ConfigError("runner_command", f"cannot split {template!r}: {exc}") from exc
    if not words:
        raise ConfigError("runner_command", "empty: give the command to run for each job")
    for word in words:
        try:
            fields = [name for _, name, _, _ in string.Formatter().parse(word) if name is not None]
        except ValueError as exc:
            raise ConfigError("runner_command", f"bad placeholder in {word!r}: {exc}") from exc
        for name in fields:
            root = name.split("[", 1)[0].split(".", 1)[0]
            if root not in PLACEHOLDERS:
                raise ConfigError(
                    "runner_command",
                    f"unknown placeholder {{{name}}}: use "
                    + ", ".join("{" + p + "}" for p in PLACEHOLDERS),
                )
    return words


class CommandRunner(ProcessRunner):
    """Runs `template` (see the module docstring) for each job."""

    def __init__(self, template: str, *, ssh_user: str = "ubuntu") -> None:
        super().__init__(ssh_user=ssh_user)
        self.template = template
        self.words = check_template(template)

    def command(
        self, job: Job, nodes: Sequence[Node], archive_path: str, config_path: str
    ) -> list[str]:
        values = {
            "job_id": job.job_id,
            "run": job.run,
            "nodes": ",".join(node.name for node in nodes),
            "archive_path": archive_path,
            "config_path": config_path,
            "body": dict(job.body),
        }
        try:
            return [word.format(**values) for word in self.words]
        except (KeyError, IndexError) as exc:
            raise LaunchFailed(
                f"runner_command {self.template!r} uses body field {exc} that job "
                f"{job.job_id}'s body does not have: add the field or change runner_command"
            ) from exc
