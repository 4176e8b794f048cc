"""Playbooks: the format and its errors (file:line:column), the sandbox, and running them on a fleet.

The rules (when, on_failure, templates, one shared connection) run with in-process actions;
the fleet behaviour (concurrency, faults, timeout, cancel, followups, escalation) runs
against the lab's simulated PCs and its GLPI stand-in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest

from conftest import run_cli
from l1fix import playbook as playbook_module
from l1fix import runner
from l1fix.action import Action, Observation, Param, Risk, RunContext
from l1fix.config import load_config
from l1fix.errors import BadInput, RemoteError
from l1fix.journal import Journal
from l1fix.playbook import exit_code, load_playbook, parse_playbook, playbook_schema, render_value, run_playbook

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
TICKET = 1234


# -- in-process actions ----------------------------------------------------------------------


class FakeConnection:
    def __init__(self, target: Any, log: list[str]) -> None:
        self.target, self.log = target.name, log
        log.append(f"open {self.target}")

    def close(self) -> None:
        self.log.append(f"close {self.target}")


class Diag(Action):
    """Reads the disk of a fake host (and uses the connection, to test its sharing)."""

    name = "fake-diag"
    summary = "Fake diagnostic"
    params = (Param("level", "detail level", type=int, default=1),)
    free: dict[str, int] = {}

    def check(self, ctx: RunContext) -> Observation:
        ctx.connection  # noqa: B018 - opens (or reuses) the connection
        free = self.free.get(ctx.target.name, 50)
        return Observation(True, {"disk_free_pct": free, "level": ctx.params["level"]}, f"{free}% free")


class Fix(Action):
    """Broken hosts get fixed; stuck ones stay broken (failed); angry ones refuse (error)."""

    name = "fake-fix"
    summary = "Fake fix"
    params = (
        Param("mode", "how", choices=("gentle", "hard"), default="gentle"),
        Param("force", "even if fine", type=bool, default=False),
    )
    broken: set[str] = set()
    stuck: set[str] = set()
    angry: set[str] = set()
    calls: list[tuple[str, dict]] = []

    def check(self, ctx: RunContext) -> Observation:
        ctx.connection  # noqa: B018
        if ctx.target.name in self.angry:
            raise RemoteError("the host refused", target=ctx.target.name)
        ok = ctx.target.name not in self.broken and not ctx.params["force"]
        return Observation(ok, {"broken": not ok}, "fine" if ok else "broken")

    def fix(self, ctx: RunContext, before: Observation) -> dict[str, Any]:
        self.calls.append((ctx.target.name, dict(ctx.params)))
        if ctx.target.name not in self.stuck:
            self.broken.discard(ctx.target.name)
        return {"summary": f"repaired ({ctx.params['mode']})"}

    def verify(self, ctx: RunContext, before: Observation) -> Observation:
        ok = ctx.target.name not in self.broken
        return Observation(ok, {"broken": not ok}, "fine now" if ok else "still broken")


class Risky(Fix):
    name = "fake-risky"
    risk = Risk.CONFIRM


@pytest.fixture
def fake(home, monkeypatch):
    hosts = "".join(f"  PC{i:03d}: {{address: 127.0.0.1}}\n" for i in range(1, 7))
    (home / "inventory.yml").write_text("defaults: {use_dns: false}\nhosts:\n" + hosts)
    actions = {a.name: a for a in (Diag, Fix, Risky)}
    monkeypatch.setattr(runner, "get_action", lambda name: actions[name])
    monkeypatch.setattr(playbook_module, "registry", lambda: actions)
    log: list[str] = []
    monkeypatch.setattr(playbook_module, "connect", lambda target, _config: FakeConnection(target, log))
    Diag.free = {}
    Fix.broken, Fix.stuck, Fix.angry, Fix.calls = {"PC001", "PC002"}, set(), set(), []
    config = load_config()
    return SimpleNamespace(config=config, actions=actions, log=log, journal=Journal(config.journal_path))


def book(text: str, actions: Any = None) -> Any:
    return parse_playbook(textwrap.dedent(text), "test.yml", actions=actions)


def error_of(text: str, actions: Any = None) -> str:
    with pytest.raises(BadInput) as caught:
        book(text, actions)
    return caught.value.one_line()


# -- the format ------------------------------------------------------------------------------


def test_a_playbook_loads_with_its_defaults():
    pb = book(
        """
        name: t
        params:
          service: {type: string, default: Spooler}
        steps:
          - action: spooler-restart
          - id: again
            action: service-restart
            with: {service: "{{ params.service }}"}
            on_failure: continue
        """
    )
    assert [s.id for s in pb.steps] == ["spooler_restart", "again"]
    assert [s.on_failure for s in pb.steps] == ["stop", "continue"]
    assert pb.applies_to == ("linux", "macos", "windows")  # what every step's action supports
    assert pb.resolve_params({}) == {"service": "Spooler"}
    assert pb.resolve_params({"service": "BITS"}) == {"service": "BITS"}


def test_the_schema_is_a_valid_json_schema_that_every_ready_playbook_follows(home):
    schema = playbook_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    import yaml

    for path in sorted(PLAYBOOKS.glob("*.yml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    printed = run_cli("playbook", "schema", home=home)
    assert printed.code == 0, printed.stderr
    assert json.loads(printed.stdout) == json.loads(json.dumps(schema))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [t\n", "test.yml:2:1: malformed YAML"),
        ("- just\n- a list\n", "test.yml:1:1: the playbook: expected a mapping (key: value), not a list"),
        ("steps:\n  - action: spooler-restart\n", "test.yml:1:1: the playbook: 'name' is missing"),
        ("name: t\nsteps: []\n", "test.yml:2:8: steps: must not be empty"),
        ("name: t\nname: u\nsteps: []\n", "test.yml:2:1: name: duplicate key 'name'"),
        (
            "name: t\nsteps:\n  - actoin: spooler-restart\n",
            "test.yml:3:5: steps[0].actoin: unknown key 'actoin' — did you mean 'action'?",
        ),
        (
            "name: t\nsteps:\n  - action: spooler-restat\n",
            "test.yml:3:13: steps[0].action: unknown action 'spooler-restat' — did you mean spooler-restart?",
        ),
        (
            "name: t\nsteps:\n  - action: spooler-restart\n    on_failure: escalte\n",
            "test.yml:4:17: steps[0].on_failure: expected one of stop, continue, escalate, not 'escalte'",
        ),
        (
            "name: t\nsteps:\n  - action: service-restart\n    with: {servce: Spooler}\n",
            "test.yml:4:12: steps[0].with.servce: service-restart has no parameter 'servce' — "
            "did you mean 'service' (text)?",
        ),
        (
            "name: t\nsteps:\n  - action: service-restart\n    with:\n      service: 42\n",
            "test.yml:5:16: steps[0].with.service: service-restart expects text, not 42",
        ),
        (
            "name: t\napplies_to: [ad-user]\nsteps:\n  - action: ad-password-reset\n    with: {must-change: maybe}\n",
            "test.yml:5:25: steps[0].with.must-change: ad-password-reset expects true or false, not 'maybe'",
        ),
        (
            "name: t\nsteps:\n  - action: service-restart\n",
            "test.yml:3:5: steps[0] (service_restart): service-restart needs `with: {service: …}`",
        ),
        (
            "name: t\nsteps:\n  - action: ad-password-reset\n    with: {password: hunter2}\n",
            "test.yml:4:12: steps[0].with.password: password is a secret and never written in a playbook",
        ),
        (
            "name: t\nsteps:\n  - action: spooler-restart\n  - action: spooler-restart\n",
            "test.yml:4:5: steps[1]: two steps are called 'spooler_restart' (steps[0] and steps[1])",
        ),
        (
            "name: t\nsteps:\n  - action: spooler-restart\n  - action: ad-unlock\n",
            "test.yml:3:3: steps: the actions run on different kinds of target",
        ),
        (
            "name: t\napplies_to: [ad-user]\nsteps:\n  - action: spooler-restart\n",
            "test.yml:4:13: steps[0].action: spooler-restart runs on",
        ),
        (
            "name: t\nsteps:\n  - action: spooler-restart\n    on_failure: escalate\n",
            "test.yml:4:17: steps[0].on_failure: escalate needs an `escalate:` block",
        ),
        (
            "name: t\nsteps:\n  - action: spooler-restart\nescalate: {group: N2, user: alice}\n",
            "test.yml:4:11: escalate: give exactly one of group or user",
        ),
        (
            "name: t\nparams:\n  n: {type: integer, default: many}\nsteps:\n  - action: spooler-restart\n",
            "test.yml:3:31: params.n.default: expected a whole number, not 'many'",
        ),
    ],
)
def test_validation_errors_name_the_place_and_what_was_expected(text, expected):
    assert expected in error_of(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{ params.sevice }}", "the playbook has no parameter 'sevice' — did you mean params.service?"),
        ("{{ parms.service }}", "unknown name 'parms' — did you mean params?"),
        ("{{ steps.dag.after.x }}", "there is no step 'dag' — did you mean diag?"),
        ("{{ steps.fix.status }}", "step 'fix' refers to itself"),
        ("{{ steps.last.status }}", "step 'last' runs after step 'fix': its result is not known yet"),
        ("{{ steps.diag.aftr.x }}", "a step result has no 'aftr' — did you mean after?"),
        ("{{ ''.__class__.__mro__ }}", "names starting with _ are out of a playbook's reach"),
        ("{{ steps.diag['_x'] }}", "'_x': names starting with _ are out of a playbook's reach"),
        ("{{ params.service ", "template error: unexpected end of template"),
    ],
)
def test_templates_are_checked_when_the_playbook_loads(fake, value, expected):
    text = f"""
        name: t
        params:
          service: {{type: string, default: x}}
        steps:
          - id: diag
            action: fake-diag
          - id: fix
            action: fake-fix
            with:
              mode: "{value}"
          - id: last
            action: fake-diag
        """
    message = error_of(text, fake.actions)
    assert message.startswith("test.yml:11:13: steps[1].with.mode: "), message
    assert expected in message


def test_a_condition_is_checked_too_and_a_mistyped_param_reference_says_the_types(fake):
    when = error_of("name: t\nsteps:\n  - action: fake-diag\n    when: steps.fake_dig.status\n", fake.actions)
    assert when.startswith("test.yml:4:11: steps[0].when: step 'fake_dig'") or "there is no step" in when
    bad_when = error_of("name: t\nsteps:\n  - action: fake-diag\n    when: 'x =='\n", fake.actions)
    assert bad_when.startswith("test.yml:4:11: steps[0].when: template error")
    typed = error_of(
        "name: t\nparams:\n  n: {type: string, default: '2'}\nsteps:\n"
        "  - action: fake-diag\n    with: {level: '{{ params.n }}'}\n",
        fake.actions,
    )
    assert "test.yml:6:19: steps[0].with.level: params.n is text, the action expects a whole number" in typed


def test_parameters_from_the_command_line_are_typed_and_named(fake):
    pb = book(
        """
        name: t
        params:
          count: {type: integer, default: 1}
          force: {type: boolean, default: false}
          mode: {type: string, choices: [gentle, hard]}
        steps:
          - action: fake-diag
        """,
        fake.actions,
    )
    assert pb.resolve_params({"mode": "hard", "count": "3", "force": "yes"}) == {
        "count": 3,
        "force": True,
        "mode": "hard",
    }
    with pytest.raises(BadInput, match="needs --param mode"):
        pb.resolve_params({})
    with pytest.raises(BadInput, match="did you mean count"):
        pb.resolve_params({"mode": "hard", "cont": "2"})
    with pytest.raises(BadInput, match="expected a whole number"):
        pb.resolve_params({"mode": "hard", "count": "two"})
    with pytest.raises(BadInput, match="expected one of gentle, hard"):
        pb.resolve_params({"mode": "soft"})


# -- the sandbox -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''|attr('__class__')|attr('__mro__') }}",
        "{{ params.__init__.__globals__ }}",
        "{{ 'x' * 10000000 }}",
        "{{ 2 ** 100000 }}",
        "{{ cycler.__init__.__globals__.os }}",
    ],
)
def test_the_sandbox_refuses_escapes_and_bombs(template):
    from jinja2.exceptions import SecurityError, UndefinedError

    with pytest.raises((SecurityError, UndefinedError)):
        str(render_value(template, {"params": {}, "steps": {}, "target": "PC001"}))


def test_an_escape_at_run_time_is_that_steps_error_never_python(fake):
    pb = book(
        """
        name: t
        steps:
          - action: fake-fix
            with: {mode: "is {{ target|attr('__class__')|attr('__mro__') }}"}
        """,
        fake.actions,
    )
    [outcome] = run_playbook(pb, ["PC001"], config=fake.config)
    [step] = outcome.steps
    assert step.status == "error" and step.result is None and outcome.exit_code == 2
    assert "test.yml:5:18: step fake_fix: with.mode: refused by the sandbox" in step.error.message
    assert Fix.calls == []


def test_a_missing_key_in_an_earlier_result_names_the_step_and_key(fake):
    pb = book(
        """
        name: t
        steps:
          - id: diag
            action: fake-diag
          - action: fake-fix
            with: {mode: "{{ steps.diag.after.disk_free_pct }}"}
        """,
        fake.actions,
    )
    [outcome] = run_playbook(pb, ["PC001"], config=fake.config)
    message = outcome.steps[1].error.message
    # check found nothing wrong, so there is no after state: the message says so, naming the step
    assert "test.yml:7:18: step fake_fix: with.mode: steps.diag.after has no 'disk_free_pct'" in message
    assert "step diag was already-ok" in message
    pb = book(
        """
        name: t
        steps:
          - id: diag
            action: fake-diag
          - action: fake-fix
            when: steps.diag.before.disk_free > 10
        """,
        fake.actions,
    )
    [outcome] = run_playbook(pb, ["PC001"], config=fake.config)
    assert "steps.diag.before has no 'disk_free' (it has: disk_free_pct, level)" in outcome.error.message


# -- the rules of a run ----------------------------------------------------------------------


def test_when_reads_earlier_results_and_values_keep_their_type(fake):
    Diag.free = {"PC001": 5, "PC002": 80}
    pb = book(
        """
        name: disk
        params:
          threshold: {type: integer, default: 10}
          hard: {type: boolean, default: true}
        steps:
          - id: diag
            action: fake-diag
            with: {level: "{{ params.threshold }}"}
          - id: fix
            action: fake-fix
            when: steps.diag.before.disk_free_pct < params.threshold and steps.diag.status == "already-ok"
            with:
              mode: "{{ 'hard' if params.hard else 'gentle' }}"
              force: "{{ params.hard }}"
          - id: after
            action: fake-diag
            when: steps.fix.changed
        """,
        fake.actions,
    )
    low, high = run_playbook(pb, ["PC001", "PC002"], config=fake.config)
    assert [s.status for s in low.steps] == ["already-ok", "fixed", "already-ok"]
    assert low.steps[0].result.params == {"level": 10}
    assert Fix.calls == [("PC001", {"mode": "hard", "force": True})]  # true, not "True"
    assert [s.status for s in high.steps] == ["already-ok", "skipped", "skipped"]
    assert high.steps[1].reason.startswith("when: steps.diag.before.disk_free_pct < params.threshold")
    assert low.status == "fixed" and high.status == "already-ok" and exit_code([low, high]) == 0
    assert low.counts == {"fixed": 1, "already-ok": 2, "failed": 0}


def test_on_failure_stop_continue_and_escalate(fake):
    Fix.stuck = {"PC001"}
    Fix.angry = {"PC002"}

    def steps(on_failure: str) -> str:
        return f"""
            name: t
            escalate: {{group: Support N2, note: still broken}}
            steps:
              - id: fix
                action: fake-fix
                on_failure: {on_failure}
              - id: diag
                action: fake-diag
            """

    stopped = run_playbook(book(steps("stop"), fake.actions), ["PC001", "PC002"], config=fake.config)
    assert [s.status for s in stopped[0].steps] == ["failed", "not-run"]
    assert stopped[0].steps[1].reason == "step fix failed (on_failure: stop)"
    assert [s.status for s in stopped[1].steps] == ["error", "not-run"]
    assert stopped[0].exit_code == 1 and stopped[1].exit_code == 1  # a host-reported error is exit 1
    assert not any(o.escalate for o in stopped)

    went_on = run_playbook(book(steps("continue"), fake.actions), ["PC001"], config=fake.config)
    assert [s.status for s in went_on[0].steps] == ["failed", "already-ok"]
    assert went_on[0].status == "failed"  # continuing never hides the failure

    escalated = run_playbook(book(steps("escalate"), fake.actions), ["PC001", "PC003"], config=fake.config)
    assert escalated[0].escalate and escalated[0].escalation["state"] == "no-ticket"
    assert escalated[0].escalation["to"] == "Support N2"
    assert not escalated[1].escalate and escalated[1].status == "already-ok"


def test_the_steps_of_a_target_share_one_connection_closed_at_the_end(fake):
    pb = book(
        """
        name: t
        steps:
          - {id: one, action: fake-diag}
          - {id: two, action: fake-fix}
          - {id: three, action: fake-diag}
        """,
        fake.actions,
    )
    outcomes = run_playbook(pb, ["PC001", "PC003"], config=fake.config, concurrency=1)
    assert [o.status for o in outcomes] == ["fixed", "already-ok"]
    assert fake.log == ["open PC001", "close PC001", "open PC003", "close PC003"]


def test_every_step_is_journaled_with_the_ticket_but_leaves_no_followup_of_its_own(fake):
    pb = book("name: t\nsteps:\n  - {id: one, action: fake-diag}\n  - {id: two, action: fake-fix}\n", fake.actions)
    [outcome] = run_playbook(pb, ["PC001"], config=fake.config, ticket=77)
    rows = fake.journal.list(ticket=77)
    assert sorted(r["action"] for r in rows) == ["fake-diag", "fake-fix"]
    assert {r["run_id"] for r in rows} == {s.result.run_id for s in outcome.steps}
    # one followup for the playbook run, queued (no ticket system here), none per step
    assert fake.journal.queued_followups() == 1
    assert outcome.followup["state"] == "queued"


def test_bad_input_before_anything_runs(fake):
    pb = book("name: t\nsteps:\n  - action: fake-risky\n", fake.actions)
    with pytest.raises(BadInput, match="no targets"):
        run_playbook(pb, [" ", ""], config=fake.config)
    with pytest.raises(BadInput, match="needs confirmation"):
        run_playbook(pb, ["PC001"], config=fake.config)
    with pytest.raises(BadInput, match="concurrency"):
        run_playbook(pb, ["PC001"], config=fake.config, concurrency=0)
    assert fake.journal.list() == []
    [outcome] = run_playbook(pb, ["PC001", "pc001"], config=fake.config, yes=True)  # one target, once
    assert outcome.status == "fixed"


def test_a_failing_progress_display_never_starves_the_fleet(fake):
    pb = book("name: t\nsteps:\n  - action: fake-diag\n", fake.actions)

    def broken(_event):
        raise ValueError("display bug")

    with pytest.raises(ValueError, match="display bug"):
        run_playbook(pb, [f"PC{i:03d}" for i in range(1, 7)], config=fake.config, concurrency=2, on_progress=broken)
    rows = fake.journal.list()
    assert len(rows) == 6 and all(r["status"] == "already-ok" for r in rows)  # every target ran and was journaled


def test_an_unknown_target_is_that_targets_error(fake):
    pb = book("name: t\nsteps:\n  - action: fake-diag\n", fake.actions)
    known, unknown = run_playbook(pb, ["PC001", "PC999"], config=fake.config)
    assert known.status == "already-ok"
    assert unknown.status == "error" and unknown.error.kind == "unknown-target" and unknown.exit_code == 2


# -- fleets on the lab -----------------------------------------------------------------------


class Concurrency:
    """Counts runs in flight; each start waits a little so that runs overlap if they may."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = 0
        self.targets: list[str] = []

    def run_started(self, result) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.targets.append(result.target)
        time.sleep(0.05)

    def run_finished(self, result) -> None:
        with self.lock:
            self.now -= 1


def printer_stuck():
    return load_playbook(PLAYBOOKS / "printer-stuck.yml")


def followups(lab, ticket: int = TICKET) -> list[dict]:
    return [f for f in lab.glpi.items.get("ITILFollowup", {}).values() if f["items_id"] == ticket]


def test_concurrency_is_bounded_and_faults_stay_with_their_target(lab):
    counter = Concurrency()
    names = [f"PC{i:03d}" for i in range(40, 51) if i != 48]  # PC049 access denied, PC050 unreachable
    outcomes = run_playbook(printer_stuck(), names, config=lab.config, concurrency=3, observers=[counter])
    assert counter.peak == 3
    by_name = {o.target: o for o in outcomes}
    assert [o.target for o in outcomes] == names  # in the order given
    assert by_name["PC042"].status == "fixed"
    assert by_name["PC049"].error.kind == "auth" and by_name["PC049"].exit_code == 3
    assert by_name["PC050"].error.kind == "unreachable" and by_name["PC050"].exit_code == 3
    assert all(o.status == "already-ok" for n, o in by_name.items() if n not in ("PC042", "PC049", "PC050"))
    assert exit_code(outcomes) == 3


def test_a_slow_target_times_out_without_holding_up_the_others(lab):
    journal = Journal(lab.config.journal_path)
    started = time.monotonic()
    outcomes = run_playbook(printer_stuck(), ["PC048", "PC001", "PC007"], config=lab.config, timeout_s=1.0, grace_s=0.5)
    elapsed = time.monotonic() - started
    slow, fine, fixed = outcomes
    assert slow.status == "error" and slow.error.kind == "timeout" and slow.exit_code == 4
    assert slow.steps[0].id == "spooler" and slow.steps[1].status == "not-run"
    assert fine.status == "already-ok" and fixed.status == "fixed"
    assert elapsed < 4  # the slow PC answers in 2 s per request: it was not waited for
    [row] = journal.list(target="PC048")
    assert row["status"] == "error" and row["error"]["kind"] == "timeout"  # recorded, not left "running"


def test_cancel_starts_no_new_target_and_journals_everything(lab):
    cancel = threading.Event()
    seen = Concurrency()

    class CancelAfterThree:
        finished = 0

        def run_started(self, result) -> None:
            return None

        def run_finished(self, result) -> None:
            CancelAfterThree.finished += 1
            if CancelAfterThree.finished == 3:
                cancel.set()

    names = [f"PC{i:03d}" for i in range(1, 41)]
    outcomes = run_playbook(
        printer_stuck(), names, config=lab.config, concurrency=2, cancel=cancel, observers=[seen, CancelAfterThree()]
    )
    assert len(outcomes) == 40
    started = [o for o in outcomes if o.steps[0].result is not None]
    assert 3 <= len(started) <= 4  # the 3 that finished, and at most the one running beside them
    not_started = [o for o in outcomes if o.steps[0].result is None]
    assert all(o.status == "interrupted" and o.exit_code == 130 for o in not_started)
    assert "cancelled (Ctrl-C) before it started" in not_started[0].error.message
    rows = Journal(lab.config.journal_path).list(limit=500)
    assert sorted(r["target"] for r in rows) == sorted(seen.targets) == sorted(o.target for o in started)
    assert all(r["status"] != "running" for r in rows)
    assert exit_code(outcomes) == 130


def test_one_followup_per_target_run_summarising_its_steps(lab):
    config = lab.home / "config.toml"
    config.write_text(
        config.read_text().replace(
            'inventory = "lab/inventory.yml"', 'inventory = "lab/inventory.yml"\nallowed_services = ["Spooler", "Fax"]'
        )
    )
    cfg = load_config(None, "lab")
    [outcome] = run_playbook(printer_stuck(), ["PC042"], config=cfg, ticket=TICKET, params={"dependent_service": "Fax"})
    assert [s.status for s in outcome.steps] == ["fixed", "fixed"]
    assert outcome.followup["state"] == "sent"
    [followup] = followups(lab)
    content = followup["content"]
    for expected in ("playbook printer-stuck sur PC042", "spooler", "dependent", "service-restart", "corrigé"):
        assert expected in content
    assert f"l1fix-play-{outcome.play_id}" in content
    runs = Journal(cfg.journal_path).list(ticket=TICKET)
    assert len(runs) == 2 and all(r["followup"] is None for r in runs)  # the steps left none of their own


def test_a_fleet_on_one_ticket_leaves_one_followup_with_a_table(lab):
    names = ["PC001", "PC007", "PC013", "PC042", "PC050"]
    outcomes = run_playbook(printer_stuck(), names, config=lab.config, ticket=TICKET)
    [followup] = followups(lab)
    content = followup["content"]
    assert "sur 5 cibles" in content and "&#60;table&#62;" in content  # GLPI 10 stores it HTML-encoded
    for name in names:
        assert name in content
    assert all(o.followup == {"ticket": TICKET, "state": "sent", "followup_id": followup["id"]} for o in outcomes)


def test_a_failed_step_with_on_failure_escalate_escalates_the_ticket(lab):
    [outcome] = run_playbook(printer_stuck(), ["PC013"], config=lab.config, ticket=TICKET)
    assert outcome.status == "failed" and outcome.escalate
    assert outcome.escalation["state"] == "escalated" and outcome.escalation["to"] == "Support N2"
    group = next(g["id"] for g in lab.glpi.items["Group"].values() if g["name"] == "Support N2")
    links = lab.glpi.items.get("Group_Ticket", {}).values()
    assert any(link["tickets_id"] == TICKET and link["groups_id"] == group and link["type"] == 2 for link in links)
    [followup] = followups(lab)  # one followup: the steps and the escalation together
    assert "Escaladé au niveau 2 (Support N2)" in followup["content"]


def test_a_dry_run_changes_nothing_and_does_not_escalate(lab):
    outcomes = run_playbook(printer_stuck(), ["PC007", "PC013"], config=lab.config, ticket=TICKET, dry_run=True)
    assert [o.status for o in outcomes] == ["skipped", "skipped"]
    assert not lab.glpi.items.get("Group_Ticket")
    [again] = run_playbook(printer_stuck(), ["PC007"], config=lab.config)
    assert again.status == "fixed"  # the dry run left it broken


# -- the command line ------------------------------------------------------------------------


def play(lab, *args: str) -> Any:
    return run_cli("--profile", "lab", "play", str(PLAYBOOKS / "printer-stuck.yml"), *args, home=lab.home)


def test_cli_streams_json_lines_and_exits_with_the_worst_code(lab):
    out = play(lab, "-t", "PC042", "-t", "PC001", "-t", "PC050", "--json", "--concurrency", "2")
    assert out.code == 3, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    targets, summary = lines[:-1], lines[-1]
    assert sorted(t["target"] for t in targets) == ["PC001", "PC042", "PC050"]
    assert all(t["type"] == "target" for t in targets) and summary["type"] == "summary"
    assert summary["exit_code"] == 3 and summary["statuses"] == {"fixed": 1, "already-ok": 1, "error": 1}
    fixed = next(t for t in targets if t["target"] == "PC042")
    assert fixed["counts"] == {"fixed": 1, "already-ok": 0, "failed": 0} and fixed["steps"][0]["run_id"]


def test_cli_plain_lines_summary_table_and_targets_from_a_file(lab, tmp_path):
    listed = tmp_path / "floor2.txt"
    listed.write_text("# second floor\nPC042\n\nPC001  # reception\n")
    out = play(lab, "--targets-file", str(listed), "--ticket", str(TICKET))
    assert out.code == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("[") and "/2] PC042 fixed (spooler-restart)" in line for line in lines)
    header = next(line for line in lines if line.startswith("target"))
    assert header.split() == ["target", "status", "fixed", "already-ok", "failed", "duration"]
    assert "2 target(s): " in out.stdout
    assert len(followups(lab)) == 1


def test_cli_check_validates_and_resolves_without_running(lab):
    out = play(lab, "--check", "-t", "PC042", "--json")
    assert out.code == 0, out.stderr
    checked = out.json()
    assert checked["valid"] and checked["targets"][0]["address"] == lab.server.address_of("PC042")
    assert Journal(lab.config.journal_path).list() == []
    unknown = play(lab, "--check", "-t", "PC999")
    assert unknown.code == 2 and "PC999 is not in the inventory" in unknown.stderr
    bad = tmp_book(lab.home, "name: t\nsteps:\n  - action: spooler-restat\n")
    out = run_cli("--profile", "lab", "play", str(bad), "--check", home=lab.home)
    assert out.code == 2 and f"{bad}:3:13: steps[0].action: unknown action" in out.stderr
    assert "did you mean spooler-restart?" in out.stderr
    no_targets = play(lab)
    assert no_targets.code == 2 and "no targets" in no_targets.stderr
    bad_param = play(lab, "-t", "PC001", "--param", "dependent_servce=BITS")
    assert bad_param.code == 2 and "did you mean dependent_service?" in bad_param.stderr


def tmp_book(home: Path, text: str) -> Path:
    path = home / "bad.yml"
    path.write_text(text)
    return path


def test_ctrl_c_in_the_cli_stops_cleanly_with_a_summary(lab):
    env = {**os.environ, "L1FIX_HOME": str(lab.home)}
    names = [arg for i in range(1, 51) for arg in ("-t", f"PC{i:03d}")]
    command = [sys.executable, "-m", "l1fix", "--profile", "lab", "play", str(PLAYBOOKS / "printer-stuck.yml")]
    proc = subprocess.Popen(
        [*command, *names, "--concurrency", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # one target done: the run is under way
        assert first.startswith("[1/50]"), proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGINT)
        rest, errors = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, errors
    assert "interrupted" in rest and "50 target(s)" in rest
    rows = Journal(lab.config.journal_path).list(limit=500)
    assert 1 <= len(rows) < 50 and all(r["status"] not in ("running", "interrupted") for r in rows)


def test_help_imports_neither_yaml_jinja_nor_rich(home):
    code = (
        "import sys, json\nsys.argv = ['l1fix', 'play', '--help']\nfrom l1fix.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)"
    )
    env = {**os.environ, "L1FIX_HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    modules = set(json.loads(proc.stderr.strip().splitlines()[-1]))
    assert "--targets-file" in proc.stdout
    assert not modules & {"yaml", "jinja2", "rich", "jsonschema", "winrm", "ldap3"}
