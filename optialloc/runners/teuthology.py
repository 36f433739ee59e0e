"""The teuthology runner: do what teuthology's dispatcher does after locking.

It creates `<archive_base>/<run>/<job_id>/`, writes `orig.config.yaml` (the
body plus `job_id`, `archive_path` and `targets` `{"<user>@<host>": key}`),
and starts `teuthology-supervisor -v --bin-path <bin> --archive-dir
<archive_base> --job-config <orig.config.yaml>` in a new session, under the
launch wrapper (see `optialloc.runners.wrap`). The supervisor's own
stdout/stderr go to `supervisor.log`; the job's progress is
`teuthology.log`, which the supervisor writes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from optialloc.domain import Job, Node
from optialloc.runners.process import ProcessRunner

SUPERVISOR = "teuthology-supervisor"


class TeuthologyRunner(ProcessRunner):
    """Starts `teuthology-supervisor` for each job, exactly as teuthology-dispatcher does."""

    progress_log = "teuthology.log"
    output_log = "supervisor.log"

    def __init__(
        self, *, archive_base: str, bin_path: str | None = None, ssh_user: str = "ubuntu"
    ) -> None:
        super().__init__(ssh_user=ssh_user)
        self.archive_base = archive_base
        if bin_path is None:
            found = shutil.which(SUPERVISOR)
            bin_path = os.path.dirname(found) if found else ""
        self.bin_path = bin_path

    def command(
        self, job: Job, nodes: Sequence[Node], archive_path: str, config_path: str
    ) -> list[str]:
        supervisor = os.path.join(self.bin_path, SUPERVISOR) if self.bin_path else SUPERVISOR
        return [
            supervisor,
            "-v",
            "--bin-path",
            self.bin_path,
            "--archive-dir",
            self.archive_base,
            "--job-config",
            config_path,
        ]
