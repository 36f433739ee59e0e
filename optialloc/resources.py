"""Files shipped inside the package, and how user-given paths are resolved.

The package carries what a plain install needs at run time (read with
`importlib.resources`, so a wheel, an sdist install or `pipx` work from any
directory): the policy models (`optialloc/data/models/*.yaml`), the demo lab
(`optialloc/data/labs/demo.yaml`) and the demo workload
(`optialloc/data/workloads/demo.jsonl`). The checkout's top-level `models/`
and `fixtures/` keep copies for tests and docs; a test keeps them equal.

Path rules (docs/configuration.md):
- a policy or lab value that is a bare name (`default`, `throughput`,
  `demo`) names a shipped file; anything else is a path;
- a path on the command line is relative to the current directory;
- a path inside a config file is relative to that file's directory
  (`Config.resolved_against`); there is no fallback to a checkout.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from importlib import resources
from pathlib import Path

from optialloc.errors import InputError

#: kind -> (directory under optialloc/data, file suffix)
_KINDS = {"models": ".yaml", "labs": ".yaml", "workloads": ".jsonl"}

_files = contextlib.ExitStack()
atexit.register(_files.close)


def shipped_names(kind: str) -> list[str]:
    """The names of the shipped files of `kind` (`models`, `labs`, `workloads`), sorted."""
    suffix = _KINDS[kind]
    folder = resources.files("optialloc.data").joinpath(kind)
    return sorted(
        entry.name[: -len(suffix)] for entry in folder.iterdir() if entry.name.endswith(suffix)
    )


def shipped_path(kind: str, name: str) -> Path:
    """A real filesystem path to the shipped file `name` of `kind` (NotFound-style InputError)."""
    if name not in shipped_names(kind):
        shipped = ", ".join(shipped_names(kind))
        raise InputError(kind[:-1], f"no shipped {kind[:-1]} named {name!r} (shipped: {shipped})")
    resource = resources.files("optialloc.data").joinpath(kind, name + _KINDS[kind])
    # as_file is a no-op for a normal (unzipped) install; from a zip it extracts once.
    return Path(_files.enter_context(resources.as_file(resource)))


def is_bare_name(value: str) -> bool:
    """True for `default`, `demo`: no directory part and no file suffix."""
    return os.sep not in value and "/" not in value and "." not in value


def resolve_file(kind: str, value: str, base_dir: str | None = None) -> str:
    """The file a policy/lab/workload value means (see the module docstring).

    A bare name that is a shipped file wins; otherwise `value` is a path,
    relative to `base_dir` when given (a config file's directory), else to the
    current directory. The path is returned whether or not it exists; the
    loader reports a missing file with its own message.
    """
    if is_bare_name(value) and value in shipped_names(kind):
        return str(shipped_path(kind, value))
    path = os.path.expanduser(value)
    if base_dir is not None and not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    return path
