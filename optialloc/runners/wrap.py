"""The launch wrapper: a tiny POSIX shell script that every job runs under.

Why a wrapper: the dispatcher may die at any moment, and a job must survive
it and be found again. Before each launch the runner writes a fresh attempt
id to `<archive_path>/optialloc.attempt`, then starts this script in a new
session (`start_new_session=True`), so the script leads the job's process
group. The script

1. creates `<archive_path>/optialloc.<attempt>.pid` exclusively (noclobber);
   if that file already exists, the dispatcher has given up on this attempt
   (it wrote an `abandoned` tombstone there) and the script exits without
   running anything;
2. runs the real command in the foreground, in the same process group, with
   stdin from /dev/null and stdout/stderr appended to the job's log;
3. writes the command's exit status to `<archive_path>/optialloc.<attempt>.exit`.

The attempt id in the file names makes the tombstone race airtight: a
wrapper of an old attempt can only ever find its own tombstone, whatever a
later attempt does. Files end with a newline; a reader that sees no newline
yet reads again. A SIGTERM to the group reaches the command; the script only
notes it (a trap, not an ignore, so the command keeps the default
disposition) and still writes the status (143). After a SIGKILL there is no
exit file and the runner reports 137.

It is a shell script, not Python, because starting it is on the launch path:
dash starts in about a millisecond, a Python interpreter in tens.
`python -m optialloc.runners.wrap ARCHIVE_PATH ATTEMPT LOG -- COMMAND...`
runs it by hand, for debugging.

Test hook (never set it in production): when `OPTIALLOC_WRAP_HOLD` names a
file, the script waits, before step 1, until that file exists. The tests use
it to hold a launched wrapper back while a restarted dispatcher reconciles,
so both orders of the tombstone race are driven for real
(tests/test_reconcile_race.py). Unset (the default) it costs one shell test.
"""

from __future__ import annotations

import os
import sys

ATTEMPT_FILE = "optialloc.attempt"
TOMBSTONE = "abandoned"
SHELL = "/bin/sh"
#: Test hook: a file the wrapper waits for before it claims its attempt (see above).
HOLD_ENV = "OPTIALLOC_WRAP_HOLD"

SCRIPT = r"""
dir=$1; attempt=$2; log=$3; shift 3
if [ -n "${OPTIALLOC_WRAP_HOLD:-}" ]; then
  while [ ! -e "$OPTIALLOC_WRAP_HOLD" ]; do sleep 0.05; done
fi
set -C
{ echo "$$" > "$dir/optialloc.$attempt.pid"; } 2>/dev/null || exit 0
set +C
trap 'stopping=1' TERM INT HUP
"$@" </dev/null >>"$log" 2>&1
st=$?
echo "$st" > "$dir/optialloc.$attempt.exit"
exit "$st"
"""


def pid_file(attempt: str) -> str:
    return f"optialloc.{attempt}.pid"


def exit_file(attempt: str) -> str:
    return f"optialloc.{attempt}.exit"


def wrapper_argv(archive_path: str, attempt: str, log_path: str, command: list[str]) -> list[str]:
    """The argv that runs `command` under the wrapper.

    `archive_path` and `attempt` are in the cmdline: liveness checks recognize the job by them.
    """
    return [SHELL, "-c", SCRIPT, "optialloc-wrap", archive_path, attempt, log_path, *command]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 5 or args[3] != "--":
        sys.stderr.write(
            "usage: python -m optialloc.runners.wrap ARCHIVE_PATH ATTEMPT LOG -- COMMAND...\n"
        )
        return 2
    full = wrapper_argv(args[0], args[1], args[2], args[4:])
    os.execv(full[0], full)
    return 1  # pragma: no cover - execv does not return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
