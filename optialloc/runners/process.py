"""The part every real runner shares: start a command under the wrapper, find it again, end it.

Contract (the `Runner` port): `launch` creates the archive dir, writes
`orig.config.yaml`, durably records a fresh attempt id
(`optialloc.attempt`, written with tmp + rename), starts the wrapper in a new
session and returns its handle at once; it does not wait for the wrapper,
because the attempt file and the wrapper's exclusive pid file already make
every crash recoverable (see `optialloc.runners.wrap` and
docs/reliability.md). `poll` is None while the wrapper lives, else the exit
status from the attempt's exit file (137 when it was killed before writing
one). `kill` sends SIGTERM to the whole process group and SIGKILL after
`grace_s`, on a background thread so a tick never blocks for the grace period.
`launch_many` launches a tick's batch on a few threads (see its docstring).

Liveness of a wrapper this process did not start (adopted after a restart)
guards against pid reuse: the pid counts as the job's only while
`/proc/<pid>/cmdline` still holds the job's archive path and attempt id and
the process is not a zombie.

Subclasses say which command to run (`command`) and which file shows the
job's progress (`progress_log`).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import yaml

from optialloc.domain import Job, Node
from optialloc.errors import OptiallocError
from optialloc.ports import LaunchHandle
from optialloc.runners.wrap import ATTEMPT_FILE, TOMBSTONE, exit_file, pid_file, wrapper_argv

log = logging.getLogger(__name__)

#: Exit status reported for a wrapper that vanished without writing one (SIGKILL).
LOST_STATUS = 137
#: Threads `launch_many` starts processes on (more does not help on a few cores).
LAUNCH_THREADS = 4
#: libyaml's dumper when PyYAML has it: writing orig.config.yaml is on the launch path.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class LaunchFailed(OptiallocError):
    """The runner could not start the job; the message says why and what to fix."""


def _read_status_file(path: str) -> str | None:
    """The file's first line once it is complete (ends with a newline), else None."""
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    if not text.endswith("\n"):
        return None
    return text.strip()


def read_attempt(archive_path: str) -> str | None:
    """The id of the job's latest launch attempt, None if it was never launched."""
    return _read_status_file(os.path.join(archive_path, ATTEMPT_FILE)) or None


def read_pid(archive_path: str, attempt: str | None = None) -> int | None:
    """The wrapper's pid for `attempt` (default: the latest).

    None if the pid file is absent, incomplete or an `abandoned` tombstone.
    """
    attempt = attempt or read_attempt(archive_path)
    if attempt is None:
        return None
    text = _read_status_file(os.path.join(archive_path, pid_file(attempt)))
    if text is None or text == TOMBSTONE:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def read_exit(archive_path: str, attempt: str | None = None) -> int | None:
    attempt = attempt or read_attempt(archive_path)
    if attempt is None:
        return None
    text = _read_status_file(os.path.join(archive_path, exit_file(attempt)))
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        log.warning(
            "%s: exit file of attempt %s holds %r, not a status", archive_path, attempt, text
        )
        return LOST_STATUS


def wrapper_alive(pid: int, archive_path: str, attempt: str | None = None) -> bool:
    """True while `pid` is a live (not zombie) wrapper of the job at `archive_path`/`attempt`."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(b")", 1)[-1].split()[0:1]
    if state in ([b"Z"], [b"X"]):
        return False
    args = cmdline.split(b"\0")
    return archive_path.encode() in args and (attempt is None or attempt.encode() in args)


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ProcessRunner:
    """Base of the command and teuthology runners (see the module docstring)."""

    #: file name (in the archive dir) whose growth shows progress
    progress_log = "output.log"
    #: file name (in the archive dir) the command's stdout/stderr go to
    output_log = "output.log"

    def __init__(self, *, ssh_user: str = "ubuntu") -> None:
        self.ssh_user = ssh_user
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._programs: set[str] = set()
        self._prepared: set[str] = set()  # archive dirs `prepare` just cleared for a launch
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _found(self, program: str) -> bool:
        """`shutil.which`, remembering programs found (a lookup per launch costs ~0.1 ms)."""
        if program in self._programs:
            return True
        if shutil.which(program):
            self._programs.add(program)
            return True
        return False

    # -- what subclasses provide ---------------------------------------
    def command(
        self, job: Job, nodes: Sequence[Node], archive_path: str, config_path: str
    ) -> list[str]:
        raise NotImplementedError

    # -- launch ----------------------------------------------------------
    def job_config(self, job: Job, nodes: Sequence[Node], archive_path: str) -> dict[str, object]:
        """`orig.config.yaml` as teuthology's dispatcher writes it.

        The body plus `job_id`, `archive_path` and `targets`; `priority` is the
        queue's current one, so a `queue priority` change is what the archive records.
        """
        config = dict(job.body)
        config["priority"] = job.priority
        config["job_id"] = job.job_id
        config["archive_path"] = archive_path
        config["targets"] = {f"{self.ssh_user}@{node.name}": node.ssh_pub_key for node in nodes}
        return config

    def prepare(self, archive_path: str) -> None:
        """Before a launch is journaled: retire the previous attempt of this archive dir.

        A job relaunched in the same dir (kicked after a bury) must not be
        mistaken, after a crash, for its earlier attempt: the old attempt file
        is moved aside, so until the new launch writes its own, the dir shows
        no attempt at all. Refuses (LaunchFailed) while an earlier attempt
        still runs, so a job never runs twice.
        """
        attempt = read_attempt(archive_path)
        if attempt is None:
            with self._lock:
                self._prepared.add(archive_path)
            return
        pid = read_pid(archive_path, attempt)
        if pid is not None and wrapper_alive(pid, archive_path, attempt):
            raise LaunchFailed(f"{archive_path}: a previous attempt (pid {pid}) is still running")
        path = os.path.join(archive_path, ATTEMPT_FILE)
        try:
            os.replace(path, f"{path}.{attempt}")
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LaunchFailed(
                f"cannot retire the previous attempt in {archive_path}: {exc}"
            ) from exc
        with self._lock:
            self._prepared.add(archive_path)

    def _check_previous(self, archive_path: str) -> None:
        """Refuse to start a job whose previous attempt still runs (never run one twice)."""
        attempt = read_attempt(archive_path)
        pid = read_pid(archive_path, attempt) if attempt else None
        if pid is not None and wrapper_alive(pid, archive_path, attempt):
            raise LaunchFailed(f"{archive_path}: a previous attempt (pid {pid}) is still running")

    def launch(self, job: Job, nodes: Sequence[Node], archive_path: str) -> LaunchHandle:
        attempt = uuid.uuid4().hex[:16]
        try:
            os.makedirs(archive_path, exist_ok=True)
            with self._lock:
                prepared = archive_path in self._prepared
                self._prepared.discard(archive_path)
            if not prepared:  # `prepare` already did this check (and retired the attempt)
                self._check_previous(archive_path)
            config_path = os.path.join(archive_path, "orig.config.yaml")
            # Dumped to a string first: libyaml writing to a file object makes many
            # small writes (measured 0.9 ms a launch, against 0.1 ms this way).
            text = yaml.dump(
                self.job_config(job, nodes, archive_path), Dumper=_DUMPER, default_flow_style=False
            )
            with open(config_path, "w", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as exc:
            raise LaunchFailed(
                f"cannot prepare archive dir {archive_path}: {exc}: "
                "check archive_base exists and is writable"
            ) from exc
        argv = self.command(job, nodes, archive_path, config_path)
        if not argv or not self._found(argv[0]):
            raise LaunchFailed(
                f"runner command {argv[0] if argv else '(empty)'!r} not found or not "
                "executable: fix runner_command / teuthology_bin_path in the config"
            )
        log_path = os.path.join(archive_path, self.output_log)
        tmp = os.path.join(archive_path, f".{ATTEMPT_FILE}.{attempt}")
        try:
            with open(tmp, "w", encoding="ascii") as handle:
                handle.write(attempt + "\n")
            os.replace(tmp, os.path.join(archive_path, ATTEMPT_FILE))
            popen = subprocess.Popen(
                wrapper_argv(archive_path, attempt, log_path, argv),
                cwd=archive_path,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise LaunchFailed(f"cannot start the job wrapper: {exc}") from exc
        with self._lock:
            self._children[popen.pid] = popen
        return LaunchHandle(job.job_id, popen.pid, popen.pid, archive_path, datetime.now(UTC))

    def launch_many(
        self,
        launches: Sequence[tuple[Job, Sequence[Node], str]],
        after: Callable[[], None] | None = None,
    ) -> list[LaunchHandle | OptiallocError]:
        """`launch` each (job, nodes, archive_path); a handle or the launch's error, in order.

        Launches run on a few threads: starting a process stalls the calling
        thread until the child has exec'd (vfork), and on a busy machine that
        wait, not our work, is most of a launch. `after` is called once per
        successful launch, on the thread that did it (the commit's crash point).
        """

        def one(item: tuple[Job, Sequence[Node], str]) -> LaunchHandle | OptiallocError:
            try:
                handle = self.launch(*item)
            except OptiallocError as exc:
                return exc
            except Exception as exc:  # a bug must cost this job only, not the tick's batch
                log.exception("launch of job %s failed unexpectedly", item[0].job_id)
                return LaunchFailed(f"unexpected error while launching: {exc!r}")
            if after is not None:
                after()
            return handle

        if len(launches) <= 1:
            return [one(item) for item in launches]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(LAUNCH_THREADS, thread_name_prefix="launch")
        return list(self._pool.map(one, launches))

    # -- find again ------------------------------------------------------
    def adopt(self, job_id: str, archive_path: str) -> LaunchHandle | None:
        attempt = read_attempt(archive_path)
        pid = read_pid(archive_path, attempt) if attempt else None
        if attempt is None or pid is None:
            return None
        try:
            stamp = os.stat(os.path.join(archive_path, pid_file(attempt))).st_mtime
        except FileNotFoundError:
            return None
        return LaunchHandle(job_id, pid, pid, archive_path, datetime.fromtimestamp(stamp, UTC))

    def abandon(self, archive_path: str) -> bool:
        """Make sure the latest attempt, whose wrapper wrote no pid file, never starts.

        Writes the `abandoned` tombstone exclusively. True: done, the attempt
        never ran and never will (also when no attempt was ever recorded).
        False: its wrapper got there first; adopt it.
        """
        attempt = read_attempt(archive_path)
        if attempt is None:
            return True
        path = os.path.join(archive_path, pid_file(attempt))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            # ours from an earlier reconcile that died before journaling it: still abandoned
            return _read_status_file(path) == TOMBSTONE
        with os.fdopen(fd, "w") as handle:
            handle.write(TOMBSTONE + "\n")
        return True

    def poll(self, handle: LaunchHandle) -> int | None:
        with self._lock:
            popen = self._children.get(handle.pid)
        if popen is not None:
            # our own child: the kernel knows, no pid file needed (it may not exist yet)
            if popen.poll() is None:
                return None
            with self._lock:
                self._children.pop(handle.pid, None)
        else:
            attempt = read_attempt(handle.archive_path)
            if wrapper_alive(handle.pid, handle.archive_path, attempt):
                return None
        status = read_exit(handle.archive_path)
        return LOST_STATUS if status is None else status

    def progress_at(self, handle: LaunchHandle) -> datetime | None:
        try:
            stamp = os.stat(os.path.join(handle.archive_path, self.progress_log)).st_mtime
        except FileNotFoundError:
            return None
        return datetime.fromtimestamp(stamp, UTC)

    # -- end -------------------------------------------------------------
    def kill(self, handle: LaunchHandle, grace_s: float) -> None:
        """SIGTERM the group now, SIGKILL it after `grace_s` (on a daemon thread)."""
        if self.poll(handle) is not None and not group_exists(handle.pgid):
            return
        try:
            os.killpg(handle.pgid, signal.SIGTERM)
        except ProcessLookupError:
            return
        thread = threading.Thread(
            target=self._finish_kill,
            args=(handle.pid, handle.pgid, grace_s),
            name=f"kill-{handle.job_id}",
            daemon=True,
        )
        thread.start()

    def _finish_kill(self, pid: int, pgid: int, grace_s: float) -> None:
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            with self._lock:
                popen = self._children.get(pid)
            if popen is not None:
                popen.poll()
            if not group_exists(pgid):
                return
            time.sleep(0.05)
        try:
            os.killpg(pgid, signal.SIGKILL)
            log.info("job process group %d ignored SIGTERM for %.0f s: sent SIGKILL", pgid, grace_s)
        except ProcessLookupError:
            pass
