"""Explicit state machines: a table of legal transitions and one check that enforces it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum
from typing import TypeVar

S = TypeVar("S", bound=Enum)


class IllegalTransitionError(RuntimeError):
    """A state change its machine does not allow (a bug, never bad input)."""

    def __init__(self, machine: str, old: Enum, new: Enum) -> None:
        self.machine, self.old, self.new = machine, old, new
        super().__init__(f"illegal {machine} transition {old.value} -> {new.value}")


def check_transition(table: Mapping[S, frozenset[S]], machine: str, old: S, new: S) -> S:
    """Return `new` if `old -> new` is in `table`, else raise IllegalTransitionError."""
    if new not in table[old]:
        raise IllegalTransitionError(machine, old, new)
    return new


def transition_table(
    edges: Mapping[S, Iterable[S]], terminal: Iterable[S] = ()
) -> dict[S, frozenset[S]]:
    """A machine's table from {state: the states it may move to}; each of the `terminal`
    states gets an empty row (it has none in `edges`). Every member of the enum needs its row,
    so a state added later cannot be forgotten: ValueError at import names the missing ones."""
    table = {old: frozenset(new) for old, new in edges.items()}
    for state in terminal:
        if table.setdefault(state, frozenset()):
            raise ValueError(f"terminal state {state.value} has transitions")
    states = type(next(iter(table)))
    missing = [s.value for s in states if s not in table]
    if missing:
        raise ValueError(f"{states.__name__}: no transitions row for {', '.join(missing)}")
    return table
