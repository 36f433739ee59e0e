"""Factories: the inventory and the reporter a `Config` asks for.

`open_inventory(config)`: paddles when `lock_server` is set, else the
embedded SQLite inventory at `<state_dir>/inventory.sqlite`, which on first
use (no nodes yet) imports `config.lab`, or the bundled demo lab.
`open_reporter(config)`: paddles' runs/jobs API through the durable report
outbox in the state dir when `results_server` is set, else a reporter that
only logs.
"""

from __future__ import annotations

import logging
import os

from optialloc.config import Config
from optialloc.inventory.embedded import EmbeddedInventory
from optialloc.inventory.lab_file import load_lab_file
from optialloc.inventory.outbox import OUTBOX_FILE
from optialloc.inventory.paddles import PaddlesInventory
from optialloc.inventory.paddles_client import PaddlesClient
from optialloc.inventory.reporter import REPORT_TIMEOUT_S, NullReporter, OutboxReporter

log = logging.getLogger(__name__)

#: The lab an empty embedded inventory imports when no `lab` is configured (shipped).
DEMO_LAB = "demo"
INVENTORY_FILE = "inventory.sqlite"


def inventory_path(config: Config) -> str:
    return os.path.join(config.state_dir, INVENTORY_FILE)


def open_embedded(config: Config, *, seed: bool = True) -> EmbeddedInventory:
    """The embedded inventory; with `seed`, an empty one imports the configured (or demo) lab."""
    inventory = EmbeddedInventory(inventory_path(config), config.locked_by)
    if seed and inventory.is_empty():
        lab_path = config.lab_path
        lab = load_lab_file(lab_path)
        result = inventory.import_nodes(lab.nodes)
        log.info(
            "new inventory %s: imported %d node(s) from lab %s (%s)",
            inventory.path,
            len(result.added),
            lab.name,
            lab_path,
        )
    return inventory


def open_inventory(config: Config) -> EmbeddedInventory | PaddlesInventory:
    """The inventory `config` selects (see the module docstring)."""
    if config.lock_server:
        client = PaddlesClient(config.lock_server, setting="lock_server")
        return PaddlesInventory(client, config.locked_by, lock_many=config.lock_many)
    return open_embedded(config)


def open_reporter(config: Config) -> NullReporter | OutboxReporter:
    """The reporter `config` selects (see the module docstring).

    With `results_server`: reports go through the durable outbox
    `<state_dir>/reports.sqlite`, delivered by a background thread (started
    here; `close()` it). The client tries once per report: the outbox retries.
    """
    if config.results_server:
        client = PaddlesClient(
            config.results_server,
            setting="results_server",
            timeout=REPORT_TIMEOUT_S,
            attempts=1,
            cooldown_s=0.0,  # the outbox's own back-off decides when to ask again
        )
        os.makedirs(config.state_dir, exist_ok=True)
        return OutboxReporter(client, os.path.join(config.state_dir, OUTBOX_FILE))
    return NullReporter()
