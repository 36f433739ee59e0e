"""`optialloc nodes`: list, import, lock, unlock and mark up/down the lab's nodes.

Works on the inventory the config selects: the embedded SQLite inventory
(default) or paddles (`lock_server`). Exit codes: 0 done, 3 bad input (lab
file, arguments), 5 inventory unreachable, 6 a lock is held by someone else,
7 no such node.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict

from optialloc.cli.actions import add_action
from optialloc.cli.tables import table
from optialloc.config import Config, describe_inventory, load_config, with_overrides
from optialloc.domain import Node
from optialloc.errors import Conflict, ExitCode, InputError, NotFound
from optialloc.inventory import inventory_path, open_embedded, open_inventory
from optialloc.inventory.embedded import EmbeddedInventory, UsageRow
from optialloc.inventory.lab_file import load_lab_file
from optialloc.inventory.paddles import PaddlesInventory

EPILOG = """\
examples:
  optialloc nodes list --machine-type smithi
  optialloc nodes list --json
  optialloc nodes import fixtures/labs/sepia.yaml
  optialloc nodes lock smithi001 smithi002 --for /archive/my-run/17
  optialloc nodes unlock smithi001 smithi002 --for /archive/my-run/17
  optialloc nodes unlock smithi001            # whatever it is locked for, if locked by us
  optialloc nodes down mira004
  optialloc nodes usage

Locks are taken as `locked_by` from the config (default optialloc@<host>);
--locked-by acts as another locker. Exit codes: 0 done, 3 bad input,
5 inventory unreachable, 6 held by someone else, 7 no such node.
"""

Inventory = EmbeddedInventory | PaddlesInventory

#: Examples per action, shown in `optialloc nodes ACTION --help` (and run by a test).
ACTION_EXAMPLES = {
    "list": "optialloc nodes list\n  optialloc nodes list --machine-type smithi --json",
    "import": "optialloc nodes import fixtures/labs/sepia.yaml",
    "lock": "optialloc nodes lock smithi001 smithi002 --for /archive/my-run/17 --owner me@lab",
    "unlock": "optialloc nodes unlock smithi001 smithi002 --for /archive/my-run/17\n"
    "  optialloc nodes unlock smithi001",
    "up": "optialloc nodes up mira004",
    "down": "optialloc nodes down mira004",
    "usage": "optialloc nodes usage\n  optialloc nodes usage --json",
}


def _config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if getattr(args, "locked_by", None):
        config = with_overrides(config, locked_by=args.locked_by)
    return config


def _say_where(config: Config) -> None:
    """The one line a node-changing command prints: which inventory it changed."""
    print(f"optialloc nodes: changed {describe_inventory(config)}", file=sys.stderr)


def _state(node: Node) -> str:
    if node.locked:
        return "locked" if node.up else "locked,down"
    return "free" if node.up else "down"


def cmd_list(args: argparse.Namespace) -> int:
    inventory = open_inventory(_config(args))
    nodes = inventory.nodes(args.machine_type)
    if args.json:
        print(json.dumps([asdict(node) for node in nodes], indent=2))
        return int(ExitCode.OK)
    rows = [
        (
            n.name,
            n.machine_type,
            _state(n),
            n.locked_by,
            n.description,
            n.os_type,
            n.os_version,
            n.arch,
        )
        for n in nodes
    ]
    print(
        table(("NAME", "TYPE", "STATE", "LOCKED_BY", "DESCRIPTION", "OS", "VERSION", "ARCH"), rows)
    )
    states = Counter(_state(n) for n in nodes)
    print(
        f"{len(nodes)} node(s): {states['free']} free, "
        f"{states['locked'] + states['locked,down']} locked, "
        f"{states['down'] + states['locked,down']} down"
    )
    return int(ExitCode.OK)


def cmd_import(args: argparse.Namespace) -> int:
    config = _config(args)
    if config.lock_server:
        raise InputError(
            "lock_server",
            "nodes import fills the embedded inventory; with paddles, add nodes in paddles "
            "(POST /nodes/) or unset lock_server",
        )
    lab = load_lab_file(args.lab)  # validated in full before the inventory is touched
    inventory = open_embedded(config, seed=False)
    result = inventory.import_nodes(lab.nodes)
    print(
        f"lab {lab.name} ({args.lab}) into {inventory_path(config)}: "
        f"{len(result.added)} node(s) added, "
        f"{len(result.updated)} updated, {result.unchanged} unchanged (locks untouched)"
    )
    return int(ExitCode.OK)


def cmd_lock(args: argparse.Namespace) -> int:
    config = _config(args)
    inventory = open_inventory(config)
    if isinstance(inventory, EmbeddedInventory):
        nodes = inventory.lock(args.names, args.description, owner=args.owner)
    else:
        nodes = inventory.lock(args.names, args.description)
    print(
        f"locked {len(nodes)} node(s) as {inventory.locked_by} for {args.description}: "
        + " ".join(node.name for node in nodes)
    )
    _say_where(config)
    return int(ExitCode.OK)


def cmd_unlock(args: argparse.Namespace) -> int:
    config = _config(args)
    inventory = open_inventory(config)
    if args.description:
        inventory.unlock(args.names, args.description)
        print(
            f"unlocked {len(args.names)} node(s) held for {args.description}: "
            + " ".join(args.names)
        )
        _say_where(config)
        return int(ExitCode.OK)
    # No --for: unlock each node for whatever it is locked for, if we locked it.
    current = {node.name: node for node in inventory.nodes()}
    missing = [name for name in args.names if name not in current]
    if missing:
        raise NotFound(f"no node named {', '.join(missing)}: check `optialloc nodes list`")
    by_description: dict[str, list[str]] = {}
    refused = []
    for name in args.names:
        node = current.get(name)
        if node is None or not node.locked:
            by_description.setdefault("", []).append(name)
        elif node.locked_by != inventory.locked_by:
            refused.append(f"{name} is locked by {node.locked_by} (use --locked-by to act as them)")
        else:
            by_description.setdefault(node.description or "", []).append(name)
    for description, names in by_description.items():
        if description:
            inventory.unlock(names, description)
            print(f"unlocked {' '.join(names)} (held for {description})")
        else:
            print(f"{' '.join(names)}: not locked")
    _say_where(config)
    if refused:
        raise Conflict("; ".join(refused))
    return int(ExitCode.OK)


def cmd_up_down(args: argparse.Namespace) -> int:
    config = _config(args)
    inventory = open_inventory(config)
    up = args.nodes_command == "up"
    inventory.set_up(args.names, up)
    print(f"marked {len(args.names)} node(s) {'up' if up else 'down'}: {' '.join(args.names)}")
    _say_where(config)
    return int(ExitCode.OK)


def cmd_usage(args: argparse.Namespace) -> int:
    inventory = open_inventory(_config(args))
    rows: list[UsageRow] = inventory.usage()
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
        return int(ExitCode.OK)
    types = sorted({row.machine_type for row in rows})
    owners = sorted({row.owner for row in rows})
    counts = {(row.owner, row.machine_type): row.locked for row in rows}
    per_owner = [
        (
            owner,
            *(counts.get((owner, t), 0) for t in types),
            sum(counts.get((owner, t), 0) for t in types),
        )
        for owner in owners
    ]
    if not per_owner:
        print("no node is locked")
        return int(ExitCode.OK)
    print(table(("OWNER", *types, "TOTAL"), per_owner))
    print(f"{sum(row.locked for row in rows)} locked node(s) in total")
    return int(ExitCode.OK)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "nodes",
        help="list, import, lock and unlock the lab's nodes",
        description="The lab's nodes and their locks (embedded inventory or paddles).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="nodes_command", metavar="ACTION", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return add_action(sub, name, help_text, ACTION_EXAMPLES[name])

    p = add("list", "list nodes with their state and lock")
    p.add_argument("--machine-type", metavar="T", help="only nodes of this machine type")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_list)

    p = add("import", "add or update nodes from a lab YAML (embedded inventory)")
    p.add_argument("lab", metavar="LAB.yaml", help="lab file (format: docs/nodes.md)")
    p.set_defaults(func=cmd_import)

    p = add("lock", "lock nodes for one job, all or none")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument(
        "--for",
        dest="description",
        required=True,
        metavar="DESCRIPTION",
        help="what the lock is for (teuthology: the job's archive path)",
    )
    p.add_argument("--owner", help="the job's owner, shown by `nodes usage` (embedded inventory)")
    p.add_argument(
        "--locked-by", metavar="WHO", help="lock as WHO instead of the config's locked_by"
    )
    p.set_defaults(func=cmd_lock)

    p = add("unlock", "unlock nodes we hold")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument(
        "--for",
        dest="description",
        metavar="DESCRIPTION",
        help="only if locked for this (default: whatever each node is locked for)",
    )
    p.add_argument(
        "--locked-by", metavar="WHO", help="act as WHO instead of the config's locked_by"
    )
    p.set_defaults(func=cmd_unlock)

    for action, text in (
        ("up", "mark nodes up (usable)"),
        ("down", "mark nodes down (never handed out)"),
    ):
        p = add(action, text)
        p.add_argument("names", nargs="+", metavar="NAME")
        p.set_defaults(func=cmd_up_down)

    p = add("usage", "locked nodes per owner per machine type")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_usage)
