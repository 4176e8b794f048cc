"""outlook-reset (and --undo) through the runner and the CLI, against the lab's simulated PCs."""

from __future__ import annotations

import copy
import html
import json
import re
from typing import Any

import pytest

from conftest import run_cli
from l1fix.lab.outlook import BACKUP_ROOT, OutlookHive
from l1fix.lab.windows import LabSimulator, TempFile, UserProfile, healthy_host, packaged_library, packaged_scripts
from l1fix.runner import execute
from l1fix.targets.powershell import ARGUMENTS, COMMAND, build_stdin
from l1fix.tickets.followup import render
from twins import HOSTILE_LOGINS

SCRIPT = packaged_scripts()["outlook_reset"]
LIBRARY = packaged_library()
DATA = "C:\\Users\\{}\\AppData\\Local\\Microsoft\\Outlook"


def run(lab: Any, target: str, confirm: Any = None, **params: Any):
    """A confirmed run (as with --yes): check, fix and verify in one script run."""
    return execute("outlook-reset", target, params, config=lab.config, confirm=confirm)


def host(lab: Any, name: str):
    return lab.simulator.hosts[name]


def snapshot(pc: Any) -> tuple[Any, ...]:
    """What a reset changes and an undo must put back: the hives and the files on disk."""
    return copy.deepcopy(pc.outlook.hives), sorted((f.path, f.size) for f in pc.files)


def file_names(pc: Any, user: str) -> list[str]:
    folder = DATA.format(user) + "\\"
    return sorted(f.path.removeprefix(folder) for f in pc.files if f.path.startswith(folder))


# --------------------------------------------------------------------------- reset


def test_reset_backs_up_removes_the_profile_and_sets_the_ost_aside(lab: Any) -> None:
    pc = host(lab, "PC024")
    sid = pc.profiles[0].sid
    result = run(lab, "PC024", user="jdupont")
    assert result.status == "fixed", result.summary
    assert result.before["user"] == "CORP\\jdupont" and result.before["profiles"] == ["Outlook"]
    assert result.before["ost_files"] == ["jdupont@corp.com.ost"] and result.before["hive"].startswith("loaded (")
    folder = result.done["backup_folder"]
    assert re.fullmatch(re.escape(BACKUP_ROOT + "\\jdupont\\") + r"\d{8}T\d{6}Z", folder)
    stamp = folder.rpartition("\\")[2]
    assert result.done["ost_renamed"] == [f"jdupont@corp.com.ost.l1fix-{stamp}.bak"]
    assert result.after["profiles_key"] is False and result.after["default_profile"] is None
    assert result.after["ost_files"] == [] and result.after["backup_folder"] == folder
    # The simulated PC: key and value gone, the OST renamed (not deleted), the backup written.
    assert pc.outlook.hives[sid] == OutlookHive(None, None)
    assert file_names(pc, "jdupont") == [f"jdupont@corp.com.ost.l1fix-{stamp}.bak"]
    backup = pc.outlook.backups[folder]
    assert backup["profiles.reg"]["profiles"] == {"Outlook": {"001f6700": "Microsoft Exchange"}}
    assert backup["manifest.json"]["default_profile"] == "Outlook" and backup["manifest.json"]["restored"] is None
    # The technician (and the ticket's followup, made of the steps) learns where the backup is.
    assert f"Backup: {folder} (outlook-reset --undo restores it)" in result.summary
    assert html.escape(folder, quote=False) in render(result, language="en").content_html


def test_a_reset_profile_is_already_ok_and_gets_no_new_backup(lab: Any) -> None:
    assert run(lab, "PC024", user="jdupont").status == "fixed"
    backups = dict(host(lab, "PC024").outlook.backups)
    again = run(lab, "PC024", user="CORP\\jdupont")
    assert again.status == "already-ok" and again.done is None
    assert "no Outlook profile and no OST file here" in again.summary
    assert host(lab, "PC024").outlook.backups == backups


def test_keep_ost_leaves_the_ost_in_place(lab: Any) -> None:
    result = run(lab, "PC024", user="jdupont", **{"keep-ost": True})
    assert result.status == "fixed", result.summary
    assert result.done["ost_renamed"] == [] and "OST files kept (--keep-ost)" in result.summary
    assert file_names(host(lab, "PC024"), "jdupont") == ["jdupont@corp.com.ost"]
    manifest = host(lab, "PC024").outlook.backups[result.done["backup_folder"]]["manifest.json"]
    assert manifest["ost_renamed"] == []


def test_outlook_running_for_the_user_is_refused(lab: Any) -> None:
    pc = host(lab, "PC025")
    before = snapshot(pc)
    result = run(lab, "PC025", user="amartin")
    assert result.status == "error" and result.exit_code == 1 and result.error.kind == "remote-error"
    assert "Outlook is running for CORP\\amartin (process 7312)" in result.error.message
    assert "--close-outlook" in result.error.message and "PC025" in result.error.message
    assert snapshot(pc) == before and pc.outlook.backups == {} and pc.outlook.processes == {7312: pc.profiles[0].sid}


def test_a_dry_run_while_outlook_runs_says_it_must_be_closed(lab: Any) -> None:
    pc = host(lab, "PC025")
    before = snapshot(pc)
    result = execute("outlook-reset", "PC025", {"user": "amartin"}, config=lab.config, dry_run=True)
    assert result.status == "skipped" and result.exit_code == 0
    assert result.before["outlook_running"] is True
    assert "Outlook must be closed first" in result.summary and "--close-outlook" in result.summary
    assert snapshot(pc) == before and pc.outlook.backups == {}


def test_close_outlook_closes_it_then_resets(lab: Any) -> None:
    pc = host(lab, "PC025")
    result = run(lab, "PC025", user="amartin", **{"close-outlook": True})
    assert result.status == "fixed", result.summary
    assert result.before["outlook_running"] is True and result.done["outlook_closed"] == [7312]
    assert "Outlook closed (process 7312)" in result.summary
    assert pc.outlook.processes == {} and result.after["outlook_running"] is False


def test_a_logged_off_users_hive_is_loaded_then_always_unloaded(lab: Any) -> None:
    pc = host(lab, "PC026")
    sid = pc.profiles[0].sid
    result = run(lab, "PC026", user="mleroy")
    assert result.status == "fixed", result.summary
    assert result.before["hive"] == "loaded by l1fix from NTUSER.DAT, then unloaded"
    root = f"HKU\\l1fix_{sid}"
    # check, fix and verify each load the hive and unload it; nothing stays loaded.
    assert pc.outlook.hive_log == [f"load {root}", f"unload {root}"] * 3
    assert pc.outlook.mounted == set() and sid not in pc.outlook.loaded
    assert pc.outlook.hives[sid].profiles is None
    manifest = pc.outlook.backups[result.done["backup_folder"]]["manifest.json"]
    assert manifest["hive_root"] == f"l1fix_{sid}"


def test_the_hive_is_unloaded_even_when_the_step_fails(lab: Any) -> None:
    pc = host(lab, "PC026")
    pc.outlook.backup_writable = False
    result = run(lab, "PC026", user="mleroy")
    assert result.status == "failed"
    assert pc.outlook.mounted == set() and pc.outlook.hive_log[-1].startswith("unload ")
    assert len(pc.outlook.hive_log) == 6


def test_a_user_without_a_profile_here_is_an_error(lab: Any) -> None:
    pc = host(lab, "PC027")
    before = snapshot(pc)
    result = run(lab, "PC027", user="jdupont")
    assert result.status == "error" and result.exit_code == 1
    assert "User 'CORP\\jdupont' has no profile on this computer" in result.error.message
    assert snapshot(pc) == before and pc.outlook.backups == {}


def test_an_unknown_account_is_an_error(lab: Any) -> None:
    result = run(lab, "PC024", user="CORP\\ghost")
    assert result.status == "error" and "'CORP\\ghost' is not an account this computer knows" in result.error.message


def test_an_unwritable_backup_folder_fails_before_anything_is_removed(lab: Any) -> None:
    pc = host(lab, "PC028")
    before = snapshot(pc)
    result = run(lab, "PC028", user="jdupont")
    assert result.status == "failed" and result.exit_code == 1
    assert result.done["backup_folder"] is None and "is denied" in result.done["backup_error"]
    assert "nothing was removed" in result.summary and "still there" in result.summary
    assert snapshot(pc) == before and pc.outlook.backups == {}


def test_an_unwritable_backup_folder_leaves_outlook_running(lab: Any) -> None:
    pc = host(lab, "PC025")
    pc.outlook.backup_writable = False
    result = run(lab, "PC025", user="amartin", **{"close-outlook": True})
    assert result.status == "failed" and result.done["outlook_closed"] == []
    assert pc.outlook.processes == {7312: pc.profiles[0].sid}


def test_pst_files_are_listed_and_never_touched(lab: Any) -> None:
    pc = host(lab, "PC029")
    psts = sorted((f.path, f.size) for f in pc.files if f.path.endswith(".pst"))
    result = run(lab, "PC029", user="pmartin")
    assert result.status == "fixed", result.summary
    expected = [
        "C:\\Users\\pmartin\\AppData\\Local\\Microsoft\\Outlook\\archive 2019.pst",
        "C:\\Users\\pmartin\\Documents\\Outlook Files\\Personal.pst",
    ]
    assert result.before["pst_files"] == expected and result.done["pst_untouched"] == expected
    assert result.after["pst_untouched"] is True and "2 PST files left untouched" in result.summary
    assert sorted((f.path, f.size) for f in pc.files if f.path.endswith(".pst")) == psts


# --------------------------------------------------------------------------- undo


@pytest.mark.parametrize(("target", "user"), [("PC024", "jdupont"), ("PC026", "mleroy"), ("PC029", "pmartin")])
def test_undo_puts_back_exactly_what_the_reset_removed(lab: Any, target: str, user: str) -> None:
    pc = host(lab, target)
    before = snapshot(pc)
    assert run(lab, target, user=user).status == "fixed"
    assert snapshot(pc) != before
    undo = run(lab, target, user=user, undo=True)
    assert undo.status == "fixed", undo.summary
    assert undo.done["profiles_restored"] == ["Outlook"] and undo.done["recreated_saved_to"] is None
    assert snapshot(pc) == before
    assert pc.outlook.mounted == set()
    manifest = pc.outlook.backups[undo.done["backup_folder"]]["manifest.json"]
    assert manifest["restored"] is not None
    again = run(lab, target, user=user, undo=True)  # the one backup is restored already
    assert again.status == "error" and "no l1fix backup" in again.error.message


def test_undo_replaces_what_outlook_recreated_and_keeps_it(lab: Any) -> None:
    pc = host(lab, "PC024")
    sid = pc.profiles[0].sid
    before = snapshot(pc)
    reset = run(lab, "PC024", user="jdupont")
    # The user started Outlook: it made a new profile and a new OST.
    pc.outlook.hives[sid] = OutlookHive({"Outlook": {"new": "1"}}, "Outlook")
    pc.files.append(TempFile(DATA.format("jdupont") + "\\jdupont@corp.com.ost", 1024, 0))
    undo = run(lab, "PC024", user="jdupont", undo=True)
    assert undo.status == "fixed", undo.summary
    assert undo.done["recreated_profiles"] == ["Outlook"]
    saved = undo.done["recreated_saved_to"]
    assert saved.startswith(reset.done["backup_folder"] + "\\recreated-")
    assert pc.outlook.backups[reset.done["backup_folder"]][saved.rpartition("\\")[2]]["profiles"] == {
        "Outlook": {"new": "1"}
    }
    assert "were replaced, saved to" in undo.summary and "renamed aside" in undo.summary
    aside = undo.done["ost_set_aside"]
    assert len(aside) == 1 and aside[0] in file_names(pc, "jdupont")  # kept, never deleted
    assert pc.outlook.hives == before[0]
    assert "jdupont@corp.com.ost" in file_names(pc, "jdupont")


def test_undo_without_a_backup_is_refused(lab: Any) -> None:
    pc = host(lab, "PC024")
    before = snapshot(pc)
    result = run(lab, "PC024", user="jdupont", undo=True)
    assert result.status == "error" and result.exit_code == 1
    assert "There is no l1fix backup of CORP\\jdupont's Outlook profile" in result.error.message
    assert snapshot(pc) == before


# --------------------------------------------------------------------------- confirmation, dry run, input


def test_each_step_on_its_own_after_the_technician_confirms(lab: Any) -> None:
    asked: list[str] = []
    result = run(lab, "PC026", confirm=lambda q: asked.append(q) or True, user="mleroy")
    assert result.status == "fixed", result.summary
    assert len(asked) == 1 and "Run outlook-reset on PC026?" in asked[0] and "CORP\\mleroy's Outlook" in asked[0]
    assert [p["steps"] for p in host(lab, "PC026").received] == [["check"], ["fix"], ["verify"]]
    assert result.after["pst_untouched"] is True  # verify compared with the check's state it was sent


def test_declined_changes_nothing(lab: Any) -> None:
    pc = host(lab, "PC024")
    before = snapshot(pc)
    result = run(lab, "PC024", confirm=lambda q: False, user="jdupont")
    assert result.status == "skipped" and snapshot(pc) == before and pc.outlook.backups == {}


def test_dry_run_changes_nothing(lab: Any) -> None:
    pc = host(lab, "PC024")
    before = snapshot(pc)
    result = execute("outlook-reset", "PC024", {"user": "jdupont"}, config=lab.config, dry_run=True)
    assert result.status == "skipped" and snapshot(pc) == before


def test_a_login_that_is_not_a_login_is_bad_input(lab: Any) -> None:
    result = run(lab, "PC024", user="jdupont\nCORP\\admin")
    assert result.status == "error" and result.error.kind == "bad-input" and result.exit_code == 2
    assert host(lab, "PC024").received == []


@pytest.mark.parametrize("login", HOSTILE_LOGINS)
def test_hostile_logins_arrive_as_data(lab: Any, login: str) -> None:
    result = run(lab, "PC024", user=login)
    assert result.status == "error" and f"User '{login}' is not an account" in result.error.message
    pc = host(lab, "PC024")
    assert [p["params"]["user"] for p in pc.received] == [login]
    assert pc.scripts_run == ["outlook_reset"]  # identified by exact match: the script text was untouched


@pytest.mark.parametrize("login", HOSTILE_LOGINS)
def test_a_hostile_login_that_has_a_profile_is_reset_and_its_backup_stays_in_place(lab: Any, login: str) -> None:
    pc = host(lab, "PC003")
    full = login if "\\" in login else "CORP\\" + login
    pc.profiles.append(UserProfile(full, "S-1-5-21-1-2-3-4242", "C:\\Users\\odd"))
    pc.outlook.loaded.add("S-1-5-21-1-2-3-4242")
    pc.outlook.hives["S-1-5-21-1-2-3-4242"] = OutlookHive({"P": {}}, "P")
    result = run(lab, "PC003", user=login)
    assert result.status == "fixed", result.summary
    assert result.before["user"] == full
    # The backup folder is named after the profile folder Windows reports, never after the login.
    assert result.done["backup_folder"].startswith(BACKUP_ROOT + "\\odd\\")


def test_cli_refuses_without_yes_when_no_one_can_confirm(lab: Any) -> None:
    pc = host(lab, "PC024")
    before = snapshot(pc)
    out = run_cli("--profile", "lab", "outlook-reset", "PC024", "--user", "jdupont", home=lab.home)
    assert out.code == 2 and "needs confirmation" in out.stderr and "--yes" in out.stderr
    assert snapshot(pc) == before and pc.scripts_run == ["outlook_reset"]  # the check only


def test_cli_json_with_yes_then_undo(lab: Any) -> None:
    args = ("--profile", "lab", "outlook-reset", "PC029", "--user", "pmartin", "--ticket", "1234", "--json", "--yes")
    out = run_cli(*args, home=lab.home)
    assert out.code == 0, out.stderr
    data = out.json()
    assert data["status"] == "fixed" and data["params"]["user"] == "pmartin" and data["params"]["keep-ost"] is False
    assert data["done"]["backup_folder"] in data["steps"]["fix"] and data["followup"]["ticket"] == 1234
    out = run_cli(*args, "--undo", home=lab.home)
    assert out.code == 0 and out.json()["status"] == "fixed" and out.json()["done"]["mode"] == "undo"
    out = run_cli("--profile", "lab", "outlook-reset", "PC027", "--user", "jdupont", "--yes", home=lab.home)
    lines = out.stderr.strip().splitlines()
    assert out.code == 1 and len(lines) == 1 and "has no profile on this computer" in lines[0]


def test_the_action_is_listed_as_needing_confirmation(home: Any) -> None:
    out = run_cli("actions", "--json", home=home)
    action = {a["name"]: a for a in json.loads(out.stdout)}["outlook-reset"]
    assert action["risk"] == "confirm"
    assert [p["name"] for p in action["params"]] == ["user", "keep-ost", "close-outlook", "undo"]


# --------------------------------------------------------------------------- the twin and the script agree


def test_twin_keys_appear_in_the_powershell_script() -> None:
    pc = healthy_host("PC100")
    pc.profiles.append(UserProfile("CORP\\jdupont", "S-1-5-21-1-2-3-1013", "C:\\Users\\jdupont"))
    pc.outlook.hives["S-1-5-21-1-2-3-1013"] = OutlookHive({"Outlook": {}}, "Outlook")
    pc.files.append(TempFile(DATA.format("jdupont") + "\\a.ost", 10, 1))
    sim = LabSimulator({"PC100": pc})
    keys: set[str] = set()
    for params in ({"user": "jdupont"}, {"user": "jdupont", "undo": True}):
        payload = {"action": "test", "steps": ["check", "fix", "verify"], "params": params, "before": None}
        data = json.loads(sim.run_command("PC100", COMMAND, list(ARGUMENTS), build_stdin(SCRIPT, payload)).stdout)
        keys |= set(data["check"]) | set(data["check"]["state"]) | set(data["fix"]) | set(data["verify"]["state"])
        keys |= set(data["verify"]["state"]["backup"] or {})
    manifest = next(iter(pc.outlook.backups.values()))["manifest.json"]
    keys |= set(manifest) | set(manifest["ost_renamed"][0])
    missing = [k for k in sorted(keys) if not re.search(rf"\b{k}\b\s*=|\['{k}'\]", SCRIPT + LIBRARY)]
    assert missing == []
