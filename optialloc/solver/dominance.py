"""Drop job classes that no optimal plan uses, before the model is built.

At 10x Sepia most candidate classes are light jobs that cannot win against the
heavier ones, but each carries its own owner and run caps, so neither grouping
nor CP-SAT's presolve removes them cheaply. `drop_dominated` proves, by an
exchange argument, which of them no optimum starts (its docstring has the
proof); `tests/test_solver_properties.py` checks it against the unpruned model.
"""

from __future__ import annotations

from collections import defaultdict

from optialloc.solver.caps import CapTable
from optialloc.solver.lab import PoolKey
from optialloc.solver.reserve import FreeNodes

#: One usable type of a signature: (machine type, compatible pools with free nodes).
Usable = tuple[tuple[str, frozenset[PoolKey]], ...]

#: A class before its members are picked:
#: (owner or None, run or None, nodes, usable, weight units, all members, how many kept).
Proto = tuple[str | None, str | None, int, Usable, int, list[int], int]


def drop_dominated(
    protos: list[Proto], free: FreeNodes, owner_caps: CapTable, run_caps: CapTable
) -> list[Proto]:
    """Drop classes that no optimal plan uses (an exchange argument; single-pool types).

    Let class c use only type T, whose one pool has C free nodes, and D be the kept jobs
    of strictly higher weight that also use only that pool and need at most n_c nodes
    (U nodes in all). Take any plan starting a c job. Its other starts on T use at most
    C - n_c nodes, so D jobs of at least U - (C - n_c) nodes are left out. Removing the
    c job frees n_c >= n_d nodes, so a left-out D job could replace it, strictly raising
    the objective, unless its owner or run is *saturated* (within n_d of its cap). An
    owner can be saturated only by using at least need = remaining - n_c + 1 nodes of T
    (none at all if need <= 0), and saturated owners use disjoint nodes, at most
    C - n_c in all; so their D nodes total at most (sum of D nodes of owners with
    need <= 0) + (C - n_c) x max(D nodes / need). Same for runs. Owners (runs) whose cap
    cannot bind (label None) are never saturated. If U - (C - n_c) exceeds both bounds
    together, some left-out D job can always replace the c job: no optimum starts one.
    """
    sizes = sorted({p[2] for p in protos})
    order = sorted(range(len(protos)), key=lambda k: -protos[k][4])
    state: dict[str, _Cover] = {}
    dropped: set[int] = set()
    pending: list[tuple[str, str | None, str | None, int, int]] = []
    last_units = None
    for k in order:
        owner, run, nodes, usable, units, _members, take = protos[k]
        if units != last_units:
            # Only strictly heavier classes are in D: add the previous weight's now.
            for machine_type, d_owner, d_run, size, amount in pending:
                state[machine_type].add(d_owner, d_run, size, amount)
            pending.clear()
            last_units = units
        if len(usable) != 1:
            continue
        machine_type, pools = usable[0]
        filled = [p for p, m in free[machine_type].items() if m]
        if len(filled) != 1 or set(pools) != set(filled):
            continue
        cover = state.get(machine_type)
        if cover is None:
            capacity = len(free[machine_type][filled[0]])
            cover = state[machine_type] = _Cover(
                machine_type, capacity, sizes, owner_caps, run_caps
            )
        if cover.dominated(nodes):
            dropped.add(k)
            continue
        pending.append((machine_type, owner, run, nodes, take * nodes))
    return [p for k, p in enumerate(protos) if k not in dropped]


class _Cover:
    """D-job totals of one single-pool type, per node-count threshold (see `drop_dominated`)."""

    def __init__(
        self, machine_type: str, capacity: int, sizes: list[int], owners: CapTable, runs: CapTable
    ) -> None:
        self.machine_type, self.capacity, self.sizes = machine_type, capacity, sizes
        self.caps = {"o": owners, "r": runs}
        self.total = dict.fromkeys(sizes, 0)  # D nodes with n_d <= s
        self.per_holder: dict[tuple[str, str, int], int] = defaultdict(int)
        self.free_cover = {(dim, s): 0 for dim in "or" for s in sizes}
        self.max_ratio = {(dim, s): 0.0 for dim in "or" for s in sizes}

    def add(self, owner: str | None, run: str | None, size: int, amount: int) -> None:
        for s in self.sizes:
            if s < size:
                continue
            self.total[s] += amount
            for dim, holder in (("o", owner), ("r", run)):
                if holder is None:
                    continue  # its cap cannot bind: never saturated
                key = (dim, holder, s)
                self.per_holder[key] += amount
                left = self.caps[dim].remaining(holder, self.machine_type)
                need = (left if left is not None else self.capacity) - s + 1
                if need <= 0:
                    self.free_cover[(dim, s)] += amount
                else:
                    ratio = self.per_holder[key] / need
                    if ratio > self.max_ratio[(dim, s)]:
                        self.max_ratio[(dim, s)] = ratio

    def dominated(self, nodes: int) -> bool:
        room = self.capacity - nodes
        left_out = self.total[nodes] - room
        if left_out <= 0:
            return False
        cover = sum(
            self.free_cover[(dim, nodes)] + room * self.max_ratio[(dim, nodes)] for dim in "or"
        )
        return left_out > cover + 1e-9
