"""The runner's rules, with in-process actions: journal first, check → fix → verify, dry-run enforced."""

from __future__ import annotations

from typing import Any

import pytest

from l1fix import runner
from l1fix.action import Action, Observation, Param, Risk, RunContext
from l1fix.config import load_config
from l1fix.journal import Journal
from l1fix.result import Status
from l1fix.secrets import Secret


class Recorder:
    """An observer that remembers what it saw, and what the journal held at that moment."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.events: list[tuple[str, str]] = []

    def run_started(self, result) -> None:
        self.events.append(("started", self.journal.get(result.run_id)["status"]))

    def run_finished(self, result) -> None:
        self.events.append(("finished", str(result.status)))


class FakeAction(Action):
    """A fix whose host state is a dict: broken until fixed; verify reads it again."""

    name = "fake-fix"
    summary = "Fake fix for runner tests"
    params = (Param("level", "how broken", type=int, default=1),)
    target_kinds = frozenset({"windows"})
    calls: list[str] = []
    state: dict[str, Any] = {}

    def check(self, ctx: RunContext) -> Observation:
        self.calls.append("check")
        return Observation(not self.state["broken"], dict(self.state), "broken" if self.state["broken"] else "fine")

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        self.calls.append("fix")
        self.state["broken"] = self.state["stays_broken"]
        return {"summary": "repaired"}

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        self.calls.append("verify")
        return self.check(ctx)


class RiskyAction(FakeAction):
    name = "fake-risky"
    risk = Risk.CONFIRM


@pytest.fixture
def setup(home, monkeypatch):
    inventory = "hosts:\n  PC001: {address: 127.0.0.1}\n  LNX1: {address: 127.0.0.1, os: linux}\n"
    (home / "inventory.yml").write_text(inventory)
    config = load_config()
    actions = {a.name: a for a in (FakeAction, RiskyAction)}
    monkeypatch.setattr(runner, "get_action", lambda name: actions[name])
    FakeAction.calls = []
    FakeAction.state = {"broken": True, "stays_broken": False}
    journal = Journal(config.journal_path)
    return config, journal, Recorder(journal)


def test_fixed_runs_all_three_steps_and_journals_first(setup):
    config, journal, recorder = setup
    result = runner.execute("fake-fix", "pc001", {"level": "3"}, config=config, observers=[journal, recorder])
    assert result.status == Status.FIXED and result.exit_code == 0
    assert FakeAction.calls == ["check", "fix", "verify", "check"]
    assert recorder.events == [("started", "running"), ("finished", "fixed")]  # journaled before it ran
    assert result.target == "PC001" and result.params == {"level": 3}
    assert journal.get(result.run_id)["status"] == "fixed"


def test_nothing_wrong_means_no_fix(setup):
    config, journal, _ = setup
    FakeAction.state["broken"] = False
    result = runner.execute("fake-fix", "PC001", config=config, observers=[journal])
    assert result.status == Status.ALREADY_OK and FakeAction.calls == ["check"]


def test_verify_still_broken_is_failed(setup):
    config, journal, _ = setup
    FakeAction.state["stays_broken"] = True
    result = runner.execute("fake-fix", "PC001", config=config, observers=[journal])
    assert result.status == Status.FAILED and result.exit_code == 1


def test_dry_run_is_enforced_by_the_runner(setup):
    config, journal, _ = setup
    result = runner.execute("fake-fix", "PC001", config=config, dry_run=True, observers=[journal])
    assert result.status == Status.SKIPPED and "fix" not in FakeAction.calls
    assert FakeAction.state["broken"] is True


def test_risky_fix_asks_and_a_no_changes_nothing(setup):
    config, journal, _ = setup
    asked: list[str] = []
    result = runner.execute(
        "fake-risky", "PC001", config=config, confirm=lambda q: asked.append(q) or False, observers=[journal]
    )
    assert asked and "PC001" in asked[0]
    assert result.status == Status.SKIPPED and FakeAction.calls == ["check"]
    result = runner.execute("fake-risky", "PC001", config=config, confirm=lambda q: True, observers=[journal])
    assert result.status == Status.FIXED


def test_wrong_target_kind_and_bad_parameter_are_bad_input(setup):
    config, journal, _ = setup
    result = runner.execute("fake-fix", "LNX1", config=config, observers=[journal])
    assert result.status == Status.ERROR and result.exit_code == 2 and "linux" in result.error.message
    result = runner.execute("fake-fix", "PC001", {"level": "high"}, config=config, observers=[journal])
    assert result.exit_code == 2 and "level" in result.error.message
    assert FakeAction.calls == []


def test_a_bug_in_an_action_is_an_internal_error_not_a_lost_run(setup, monkeypatch):
    config, journal, _ = setup
    monkeypatch.setattr(FakeAction, "check", lambda self, ctx: 1 / 0)
    result = runner.execute("fake-fix", "PC001", config=config, observers=[journal])
    assert result.status == Status.ERROR and result.exit_code == 5
    assert isinstance(result.exception, ZeroDivisionError)
    assert journal.get(result.run_id)["status"] == "error"


def test_secrets_never_reach_the_result(setup, monkeypatch):
    config, journal, _ = setup
    secret = Secret("Temp-Pa55-XYZ")

    def leaky_check(self, ctx):
        ctx.outputs.append(f"the password is {secret.reveal()}")
        raise RuntimeError(secret.reveal())

    monkeypatch.setattr(FakeAction, "check", leaky_check)
    result = runner.execute("fake-fix", "PC001", {"level": "2"}, config=config, observers=[journal])
    text = str(result.to_json()) + str(journal.get(result.run_id))
    assert "Temp-Pa55-XYZ" not in text
    assert "[redacted]" in result.output


class FakeAccountFix(Action):
    """An account fix that takes a secret and hands the technician a temporary password."""

    name = "fake-account"
    summary = "Fake account fix"
    params = (Param("password", "a password to set", type=Secret, default=None),)
    target_kinds = frozenset({"ad-user"})

    def check(self, ctx: RunContext) -> Observation:
        return Observation(False, {"user": ctx.target.name}, "locked")

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        chosen = ctx.params["password"] or Secret("Generated-Temp-42")
        ctx.reveal("temporary password", chosen)
        return {"summary": f"password set to {chosen.reveal()}"}

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        return Observation(True, {"user": ctx.target.name}, "unlocked")


def test_account_targets_skip_the_inventory_and_secrets_stay_out_of_the_record(home, monkeypatch):
    config = load_config()
    monkeypatch.setattr(runner, "get_action", lambda name: FakeAccountFix)
    journal = Journal(config.journal_path)
    result = runner.execute(
        "fake-account", "jdupont", {"password": "Supplied-Pa55"}, config=config, observers=[journal]
    )
    assert result.status == Status.FIXED and result.target == "jdupont"
    assert [(label, s.reveal()) for label, s in result.revealed] == [("temporary password", "Supplied-Pa55")]
    recorded = str(result.to_json()) + str(journal.get(result.run_id))
    assert "Supplied-Pa55" not in recorded and "[redacted]" in recorded
    result = runner.execute("fake-account", "jdupont", config=config, observers=[journal])
    assert "Generated-Temp-42" not in str(result.to_json()) + str(journal.get(result.run_id))
