"""The generic state machine: transitions as data, terminal states derived, illegal moves refused as 409."""

import enum
from dataclasses import dataclass

import pytest

from kepler_kit.errors import Conflict
from kepler_kit.lifecycle import IllegalTransition, Lifecycle


class Build(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


BUILDS = Lifecycle(
    "build",
    Build.queued,
    {
        Build.queued: {Build.running, Build.cancelled},
        Build.running: {Build.succeeded, Build.failed, Build.cancelled},
        Build.succeeded: (),
        Build.failed: (),
        Build.cancelled: (),
    },
)


@dataclass
class Row:
    status: Build


class TestTable:
    def test_terminal_states_are_those_with_nowhere_to_go(self) -> None:
        assert BUILDS.terminal == {Build.succeeded, Build.failed, Build.cancelled}
        assert BUILDS.active == {Build.queued, Build.running}

    def test_allows_only_declared_transitions(self) -> None:
        assert BUILDS.allows(Build.queued, Build.running)
        assert not BUILDS.allows(Build.queued, Build.succeeded)
        assert not BUILDS.allows(Build.succeeded, Build.running)
        assert not BUILDS.allows(Build.running, Build.running)  # staying put is a transition too

    def test_a_state_missing_from_the_table_is_refused_at_once(self) -> None:
        """A target (or the initial state) with no row of its own would be a state nothing handles."""
        with pytest.raises(ValueError, match="failed"):
            Lifecycle("build", Build.queued, {Build.queued: {Build.running}, Build.running: {Build.failed}})
        with pytest.raises(ValueError, match="queued"):
            Lifecycle("build", Build.queued, {Build.running: ()})


class TestMove:
    def test_applies_a_legal_move_and_returns_the_state_it_left(self) -> None:
        row = Row(Build.queued)
        assert BUILDS.move(row, Build.running) is Build.queued
        assert row.status is Build.running

    def test_an_illegal_move_raises_and_changes_nothing(self) -> None:
        row = Row(Build.succeeded)
        with pytest.raises(IllegalTransition) as raised:
            BUILDS.move(row, Build.running)
        assert row.status is Build.succeeded
        assert (raised.value.current, raised.value.to) == (Build.succeeded, Build.running)

    def test_reaches_an_api_as_a_409_conflict_problem_that_says_what_was_refused(self) -> None:
        with pytest.raises(IllegalTransition) as raised:
            BUILDS.move(Row(Build.queued), Build.failed)
        problem = raised.value.problem("/api/v1/builds/1", "r-1")
        assert isinstance(raised.value, Conflict)
        assert (problem.status, problem.type) == (409, "https://kepler.dev/problems/conflict")
        assert problem.detail == (
            "A build cannot go from queued to failed; from queued it can go to cancelled, running."
        )

    def test_the_detail_of_a_move_out_of_a_final_state_says_it_is_final(self) -> None:
        with pytest.raises(IllegalTransition, match="it can go to nowhere: it is final"):
            BUILDS.check(Build.cancelled, Build.queued)
