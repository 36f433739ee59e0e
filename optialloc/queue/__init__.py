"""Pick the job-queue adapter the configuration asks for."""

from __future__ import annotations

import os
import re

from optialloc.config import Config
from optialloc.ports import JobQueue
from optialloc.queue.beanstalk import BeanstalkQueue
from optialloc.queue.embedded import EmbeddedQueue
from optialloc.queue.shadow import BeanstalkShadow


def store_path(config: Config) -> str:
    """The SQLite store: `<state_dir>/queue.sqlite` (embedded) or one file per beanstalkd."""
    if config.queue_backend == "beanstalk":
        # One store per beanstalkd: its job ids mean nothing to another server.
        address = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{config.queue_host}_{config.queue_port}")
        return os.path.join(config.state_dir, f"queue-beanstalk-{address}.sqlite")
    return os.path.join(config.state_dir, "queue.sqlite")


def open_queue(
    config: Config, *, retry_s: float = 5.0, tolerate_outage: bool = False, read_only: bool = False
) -> JobQueue:
    """The configured queue: beanstalkd (`queue_backend: beanstalk`) or the embedded store.

    `retry_s` bounds how long a beanstalkd outage is retried before
    `BackendUnavailable` is raised. With `tolerate_outage` (for the dispatcher),
    reads during a beanstalkd outage serve the jobs already in the store instead
    of raising (the outage is still logged once); writes still raise.
    With `read_only` (listings, `plan --dry-run`, status views), beanstalkd is
    read by peeking and never changed (`optialloc.queue.shadow`); every write
    raises. The embedded queue has nothing to move, so it is the same either way.
    """
    if config.queue_backend == "beanstalk":
        kind = BeanstalkShadow if read_only else BeanstalkQueue
        return kind(
            store_path(config),
            config.queue_host,
            config.queue_port,
            config.tubes,
            retry_s=retry_s,
            tolerate_outage=tolerate_outage,
        )
    return EmbeddedQueue(store_path(config))
