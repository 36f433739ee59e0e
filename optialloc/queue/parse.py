"""Loading a stored job body's text into its mapping: the fast path, bounded.

`load_mapping` is what every reader of a stored body uses (the lazy body, the
ingest check, the read-only shadow): the alias and nesting bounds of
`optialloc.yaml_bounds` first (libyaml crashes on very deep bodies), then the
fast loader (`optialloc.queue.fast_yaml`); a body that is not a mapping falls
back to `teuthology.load_body`, whose error message is the canonical one.
"""

from __future__ import annotations

from typing import Any

import yaml

from optialloc import yaml_bounds
from optialloc.queue import fast_yaml
from optialloc.teuthology import MAX_BODY_BYTES, load_body


def load_mapping(text: str) -> dict[str, Any]:
    """Load a body into a mapping, or raise `JobParseError` exactly as `load_body` words it."""
    if len(text) <= MAX_BODY_BYTES:
        yaml_bounds.check_nesting(text)  # before libyaml composes it (deep bodies crash it)
        try:
            loaded = fast_yaml.load(text, check=yaml_bounds.check_graph)
        except yaml.YAMLError:
            loaded = None
        if isinstance(loaded, dict):
            return loaded
    # Slow path only for bad bodies: `load_body` gives the canonical error message.
    return load_body(text)
