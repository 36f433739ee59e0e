"""The project's own error types and the CLI exit code each one maps to.

Adapters translate library errors (sockets, HTTP, SQLite, YAML) into these at
their boundary, with a message that names the thing that failed and the fix.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the `optialloc` command; listed in the README ("Exit codes")."""

    OK = 0
    INTERNAL = 1
    USAGE = 2  # argparse's own code for bad command-line usage
    BAD_INPUT = 3  # a file, body, policy or config that does not validate
    PLAN_REJECTED = 4  # the validator found violations in a Plan
    UNAVAILABLE = 5  # a backend (beanstalkd, paddles, SQLite file) cannot be reached
    CONFLICT = 6  # someone else holds it: a lock, a dispatcher, a node
    NOT_FOUND = 7  # a named job, node or tube does not exist


class OptiallocError(Exception):
    """Base of every error optialloc raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL


class InputError(OptiallocError, ValueError):
    """Bad input: the message names the field, what was expected and the fix."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class JobParseError(InputError):
    """A teuthology job body that cannot be scheduled as it stands."""


class PolicyError(InputError):
    """A policy model that does not validate."""


class ConfigError(InputError):
    """A configuration file that does not validate; with `source`, the message names the file."""

    def __init__(self, field: str, problem: str, source: str | None = None) -> None:
        super().__init__(field, problem)
        self.source = source
        if source is not None:
            self.args = (f"{source}: {field}: {problem}",)


class PlanRejected(OptiallocError):
    """The independent validator found violations in a Plan."""

    exit_code = ExitCode.PLAN_REJECTED

    def __init__(self, violations: list[str]) -> None:
        self.violations = violations
        super().__init__(
            f"plan rejected: {len(violations)} violation(s): " + "; ".join(violations[:5])
        )


class BackendUnavailable(OptiallocError):
    """A backend could not be reached (after retries); the message says how to fix it."""

    exit_code = ExitCode.UNAVAILABLE


class Conflict(OptiallocError):
    """Somebody else holds the thing: a node lock, the dispatcher lease, a claimed job."""

    exit_code = ExitCode.CONFLICT


class LockBusy(Conflict):
    """Nodes could not be locked now (taken or too few free); try again next tick."""


class NotFound(OptiallocError, LookupError):
    """A named job, node or tube does not exist."""

    exit_code = ExitCode.NOT_FOUND
