"""A status that may only change along declared transitions.

Deployments today, builds next: each domain with states writes its transitions once, as data, and every
writer of the status goes through `Lifecycle.move`, so an unexpected change fails loudly (a 409 problem
when it reaches an API) instead of leaving a row in a state nothing handles.
"""

import enum
from collections.abc import Collection, Mapping
from typing import Generic, Protocol, TypeVar

from kepler_kit.errors import Conflict

S = TypeVar("S", bound=enum.Enum)


class Stateful(Protocol[S]):
    """Anything with a status, such as an ORM row: the `status` column is what moves."""

    @property
    def status(self) -> S: ...

    @status.setter
    def status(self, value: S) -> None: ...


class IllegalTransition(Conflict):
    """A move the lifecycle does not allow: the row changed under the caller, or the caller is wrong."""

    def __init__(self, kind: str, current: enum.Enum, to: enum.Enum, allowed: Collection[enum.Enum]) -> None:
        onward = ", ".join(sorted(str(s.value) for s in allowed)) or "nowhere: it is final"
        here = current.value
        super().__init__(f"A {kind} cannot go from {here} to {to.value}; from {here} it can go to {onward}.")
        self.kind, self.current, self.to = kind, current, to


class Lifecycle(Generic[S]):
    """The allowed transitions of one kind of thing: state → the states it may move to next.

    A state with nowhere to go is terminal; the others are active. Every state must be a key, so a state
    that was forgotten in the table is an error at import, not a row stuck at run time.
    """

    def __init__(self, kind: str, initial: S, transitions: Mapping[S, Collection[S]]) -> None:
        targets = {t for onward in transitions.values() for t in onward}
        undeclared = (targets | {initial}) - transitions.keys()
        if undeclared:
            raise ValueError(f"{kind}: states without transitions: {sorted(s.value for s in undeclared)}")
        self.kind, self.initial = kind, initial
        self.transitions: Mapping[S, frozenset[S]] = {s: frozenset(t) for s, t in transitions.items()}
        self.terminal = frozenset(s for s, onward in self.transitions.items() if not onward)
        self.active = frozenset(self.transitions.keys() - self.terminal)

    def allows(self, current: S, to: S) -> bool:
        return to in self.transitions[current]

    def check(self, current: S, to: S) -> None:
        if not self.allows(current, to):
            raise IllegalTransition(self.kind, current, to, self.transitions[current])

    def move(self, subject: Stateful[S], to: S) -> S:
        """Checks and applies one transition; returns the state it left. Writing the event and audit row
        that go with it is the domain's `move`, which calls this first."""
        current = subject.status
        self.check(current, to)
        subject.status = to
        return current
