"""The embedded inventory against a plain model of the lock rules (Hypothesis, real SQLite).

Random sequences of lock/unlock/up/down by two lockers sharing one file;
after every step the file must say exactly what the model says.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from optialloc.domain import Node
from optialloc.errors import Conflict, LockBusy
from optialloc.inventory.embedded import EmbeddedInventory

NAMES = [f"n{i}" for i in range(6)]
LOCKERS = ["optialloc@a", "alice@desk"]
names_st = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True)
locker_st = st.sampled_from(LOCKERS)
description_st = st.sampled_from(["/archive/r/1", "/archive/r/2", "/archive/r/3"])


class InventoryModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp()
        path = Path(self.tmp) / "inventory.sqlite"
        EmbeddedInventory(path, "setup").import_nodes([Node(n, "t") for n in NAMES])
        self.inventories = {who: EmbeddedInventory(path, who) for who in LOCKERS}
        self.holder: dict[str, tuple[str, str]] = {}  # name -> (locked_by, description)
        self.up = dict.fromkeys(NAMES, True)

    def teardown(self) -> None:
        for inventory in self.inventories.values():
            inventory.close()
        shutil.rmtree(self.tmp)

    @rule(who=locker_st, names=names_st, description=description_st)
    def lock(self, who: str, names: list[str], description: str) -> None:
        allowed = all(
            self.holder.get(n) == (who, description) or (n not in self.holder and self.up[n])
            for n in names
        )
        try:
            got = self.inventories[who].lock(names, description)
        except LockBusy:
            assert not allowed
            return
        assert allowed
        assert [n.name for n in got] == names
        for name in names:
            self.holder[name] = (who, description)

    @rule(who=locker_st, names=names_st, description=description_st)
    def unlock(self, who: str, names: list[str], description: str) -> None:
        refused = [n for n in names if n in self.holder and self.holder[n] != (who, description)]
        try:
            self.inventories[who].unlock(names, description)
        except Conflict:
            assert refused
        else:
            assert not refused
        for name in names:
            if self.holder.get(name) == (who, description):
                del self.holder[name]

    @rule(names=names_st, up=st.booleans())
    def set_up(self, names: list[str], up: bool) -> None:
        self.inventories[LOCKERS[0]].set_up(names, up)
        for name in names:
            self.up[name] = up

    @invariant()
    def file_matches_model(self) -> None:
        nodes = self.inventories[LOCKERS[0]].nodes()
        assert {n.name: (n.locked_by, n.description) for n in nodes if n.locked} == self.holder
        assert {n.name: n.up for n in nodes} == self.up
        for who, inventory in self.inventories.items():
            assert {n.name for n in inventory.held()} == {
                n for n, (by, _) in self.holder.items() if by == who
            }


InventoryModel.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
test_embedded_inventory_follows_the_model = InventoryModel.TestCase
