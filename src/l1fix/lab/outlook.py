"""Outlook profiles and data files (lab only): SIMULATED Windows state, NOT a real computer.

Python twin of l1fix's `outlook_reset.ps1`, run by `l1fix.lab.windows.LabSimulator` (see the
`l1fix.lab.scripts` docstring for the rules every twin follows). A user's Outlook settings are
the `Software\\Microsoft\\Office\\16.0\\Outlook` key of their NTUSER.DAT (`OutlookState.hives`, by
SID), readable only while the hive is loaded: at HKU\\<SID> when the user is logged on
(`loaded`, what Win32_UserProfile.Loaded reports), else at HKU\\l1fix_<SID> between the
script's `reg load` and `reg unload`, both recorded in `hive_log`. OST and PST files are
`host.files`; backups are folders of files in `backups`.

Problem hosts (each user also has a Win32_UserProfile in `host.profiles`):

- PC024: CORP\\jdupont logged on, Outlook closed; profile 'Outlook' (the default) and
  jdupont@corp.com.ost: the normal reset.
- PC025: CORP\\amartin logged on with Outlook running (process 7312): refused, or closed with
  --close-outlook.
- PC026: CORP\\mleroy logged off: the script must load and unload her hive.
- PC027: CORP\\jdupont is a domain account but has no profile here (only bnguyen has one).
- PC028: CORP\\jdupont logged on, profile and OST, but the backup folder cannot be written (the
  disk is read-only): the fix must remove nothing.
- PC029: CORP\\pmartin logged on with two PST files (one beside the OST, one in Documents\\Outlook
  Files): listed, never touched.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from l1fix.lab.scripts import Clock, ScriptError, Twin, count, param, required_param, run_steps

if TYPE_CHECKING:
    from collections.abc import Callable

    from l1fix.lab.windows import TempFile, UserProfile, WindowsHost

BACKUP_ROOT = "C:\\ProgramData\\l1fix\\backup\\outlook"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
SID_PREFIX = "S-1-5-21-3623811015-3361044348-30300820-"
# Domain accounts the simulated PCs can translate to a SID (NTAccount.Translate), profile or not.
DIRECTORY = {
    "CORP\\jdupont": SID_PREFIX + "1013",
    "CORP\\mleroy": SID_PREFIX + "1022",
    "CORP\\amartin": SID_PREFIX + "1031",
    "CORP\\pmartin": SID_PREFIX + "1044",
    "CORP\\bnguyen": SID_PREFIX + "1057",
}


@dataclass
class OutlookHive:
    """The Outlook key of one NTUSER.DAT: the Profiles key (None: absent) and DefaultProfile."""

    profiles: dict[str, dict[str, str]] | None = None  # profile name → its values
    default_profile: str | None = None


@dataclass
class OutlookState:
    """A PC's Outlook state: users' hives, outlook.exe processes, l1fix's backups."""

    hives: dict[str, OutlookHive] = field(default_factory=dict)  # by SID
    loaded: set[str] = field(default_factory=set)  # SIDs whose hive is at HKU\<SID> (logged on)
    mounted: set[str] = field(default_factory=set)  # hives l1fix loaded at HKU\l1fix_<SID>, right now
    hive_log: list[str] = field(default_factory=list)  # "load HKU\l1fix_<SID>", "unload HKU\l1fix_<SID>"
    processes: dict[int, str] = field(default_factory=dict)  # outlook.exe process id → owner SID
    backups: dict[str, dict[str, Any]] = field(default_factory=dict)  # backup folder → its files by name
    backup_writable: bool = True  # False: a read-only disk, or no right on C:\ProgramData\l1fix


def run_outlook_reset(host: WindowsHost, request: dict[str, Any], clock: Clock) -> dict[str, Any]:
    """outlook_reset.ps1."""
    user = required_param(request, "user", "the login whose Outlook profile to reset")
    before = request.get("before") if isinstance(request.get("before"), dict) else {}
    settings: dict[str, Any] = {
        "user": user,
        "mode": "undo" if bool(param(request, "undo", False)) else "reset",
        "keep_ost": bool(param(request, "keep-ost", False)),
        "close_outlook": bool(param(request, "close-outlook", False)),
        "stamp": datetime.now(UTC).strftime(STAMP_FORMAT),
        "backup": before.get("backup"),
        "pst_before": list(before.get("pst_files") or []),
    }

    def check() -> dict[str, Any]:
        state = outlook_state(host, settings)
        settings["backup"] = state["backup"]
        settings["pst_before"] = list(state["pst_files"])
        return outlook_check(state, settings)

    def fix() -> dict[str, Any]:
        clock.seconds += 0.2
        return outlook_undo(host, settings) if settings["mode"] == "undo" else outlook_reset(host, settings)

    return run_steps(
        request, check=check, fix=fix, verify=lambda: outlook_verify(outlook_state(host, settings), settings)
    )


# --------------------------------------------------------------------------- the user, the hive, the files


def find_user_profile(host: WindowsHost, login: str) -> dict[str, Any]:
    """Find-UserProfile: the login translated to a SID, then its Win32_UserProfile."""
    accounts = {**DIRECTORY, **{p.login: p.sid for p in host.profiles}}
    if "\\" in login:
        found = [a for a in accounts if a.casefold() == login.casefold()]
    else:
        found = [a for a in accounts if a.partition("\\")[2].casefold() == login.casefold()]
    if len(found) != 1:
        raise ScriptError(f"User '{login}' is not an account this computer knows (give user or DOMAIN\\user).")
    account, sid = found[0], accounts[found[0]]
    profile: UserProfile | None = next((p for p in host.profiles if p.sid == sid), None)
    if profile is None:
        raise ScriptError(
            f"User '{account}' has no profile on this computer (never logged on here): there is no Outlook "
            "profile to reset."
        )
    path = profile.local_path
    return {
        "login": account,
        "sid": sid,
        "path": path,
        "leaf": path.rpartition("\\")[2],
        "loaded": sid in host.outlook.loaded,
    }


def outlook_process_ids(host: WindowsHost, sid: str) -> list[int]:
    return [pid for pid, owner in host.outlook.processes.items() if owner == sid]


def assert_outlook_closed(host: WindowsHost, user: dict[str, Any], close: bool) -> list[int]:
    """Assert-OutlookClosed."""
    ids = outlook_process_ids(host, user["sid"])
    if ids and not close:
        raise ScriptError(_running_text(user["login"], ids))
    for pid in ids:
        del host.outlook.processes[pid]
    return ids


def _running_text(login: str, ids: list[int]) -> str:
    return (
        f"Outlook is running for {login} (process {', '.join(map(str, ids))}): ask the user to close it, "
        "or run again with --close-outlook."
    )


def mount_user_hive(host: WindowsHost, user: dict[str, Any]) -> dict[str, Any]:
    """Mount-UserHive: the SID when loaded, else `reg load HKU\\l1fix_<SID> ...\\NTUSER.DAT`."""
    if user["loaded"]:
        return {"root": user["sid"], "mounted": False}
    root = f"l1fix_{user['sid']}"
    host.outlook.mounted.add(user["sid"])
    host.outlook.hive_log.append(f"load HKU\\{root}")
    return {"root": root, "mounted": True}


def dismount_user_hive(host: WindowsHost, hive: dict[str, Any]) -> None:
    if hive["mounted"]:
        sid = hive["root"].removeprefix("l1fix_")
        host.outlook.mounted.discard(sid)
        host.outlook.hive_log.append(f"unload HKU\\{hive['root']}")


def _hive(host: WindowsHost, root: str) -> OutlookHive:
    """The Outlook key under HKEY_USERS\\<root>: only a loaded hive can be read."""
    sid = root.removeprefix("l1fix_")
    loaded = sid in host.outlook.mounted if root.startswith("l1fix_") else sid in host.outlook.loaded
    if not loaded:
        raise ScriptError(f"lab: HKEY_USERS\\{root} is not loaded")
    return host.outlook.hives.setdefault(sid, OutlookHive())


def outlook_registry(host: WindowsHost, root: str) -> dict[str, Any]:
    """Get-OutlookRegistry."""
    hive = _hive(host, root)
    return {
        "profiles_key": hive.profiles is not None,
        "profiles": list(hive.profiles or {}),
        "default_profile": hive.default_profile,
    }


def _in_folder(file: TempFile, folder: str) -> bool:
    return file.path.rpartition("\\")[0].casefold() == folder.casefold()


def _name(file: TempFile) -> str:
    return file.path.rpartition("\\")[2]


def outlook_files(host: WindowsHost, user: dict[str, Any]) -> dict[str, Any]:
    """Get-OutlookFiles: OST names in the data folder; PST paths there and in Documents\\Outlook Files."""
    data_folder = user["path"] + "\\AppData\\Local\\Microsoft\\Outlook"
    files: dict[str, Any] = {"folder": data_folder, "ost": [], "pst": []}
    for folder in (data_folder, user["path"] + "\\Documents\\Outlook Files"):
        for file in sorted((f for f in host.files if _in_folder(f, folder)), key=lambda f: _name(f).casefold()):
            extension = _name(file).rpartition(".")[2].casefold()
            if extension == "pst":
                files["pst"].append(file.path)
            elif extension == "ost" and folder == data_folder:
                files["ost"].append(_name(file))
    return files


def _file(host: WindowsHost, path: str) -> TempFile | None:
    return next((f for f in host.files if f.path.casefold() == path.casefold()), None)


def backups(host: WindowsHost, user: dict[str, Any]) -> list[dict[str, Any]]:
    """Get-Backups: oldest first."""
    user_root = f"{BACKUP_ROOT}\\{user['leaf']}"
    return [
        {"folder": folder, "manifest": files["manifest.json"]}
        for folder, files in sorted(host.outlook.backups.items())
        if folder.rpartition("\\")[0].casefold() == user_root.casefold() and "manifest.json" in files
    ]


def latest_backup(host: WindowsHost, user: dict[str, Any]) -> dict[str, Any] | None:
    open_backups = [b for b in backups(host, user) if b["manifest"]["restored"] is None]
    return open_backups[-1] if open_backups else None


def outlook_state(host: WindowsHost, settings: dict[str, Any]) -> dict[str, Any]:
    """Get-OutlookState: every read of the hive between a load and an unload."""
    user = find_user_profile(host, settings["user"])
    hive = mount_user_hive(host, user)
    try:
        registry = outlook_registry(host, hive["root"])
    finally:
        dismount_user_hive(host, hive)
    files = outlook_files(host, user)
    latest = latest_backup(host, user)
    ids = outlook_process_ids(host, user["sid"])
    state: dict[str, Any] = {
        "mode": settings["mode"],
        "user": user["login"],
        "sid": user["sid"],
        "profile_path": user["path"],
        "hive": "loaded by l1fix from NTUSER.DAT, then unloaded"
        if hive["mounted"]
        else "loaded (the user is logged on)",
        "outlook_running": bool(ids),
        "outlook_process_ids": ids,
        "profiles_key": registry["profiles_key"],
        "profiles": registry["profiles"],
        "default_profile": registry["default_profile"],
        "ost_files": files["ost"],
        "pst_files": files["pst"],
        "backup_folder": None,
        "backup": None,
    }
    if latest is not None:
        manifest = latest["manifest"]
        state["backup_folder"] = latest["folder"]
        state["backup"] = {
            "created": manifest["created"],
            "profiles": list(manifest["profiles"]),
            "default_profile": manifest["default_profile"],
            "ost_files": [r["from"] for r in manifest["ost_renamed"]],
        }
    return state


def names(values: list[str]) -> str:
    """Format-Names."""
    return "'" + "', '".join(values) + "'" if values else "none"


# --------------------------------------------------------------------------- check, fix, verify


def nothing_to_reset(state: dict[str, Any], settings: dict[str, Any]) -> bool:
    """Test-NothingToReset: no profile key, no DefaultProfile, no OST (or --keep-ost)."""
    return (
        not state["profiles_key"]
        and state["default_profile"] is None
        and (settings["keep_ost"] or not state["ost_files"])
    )


def outlook_check(state: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    ids = state["outlook_process_ids"]
    running = f" Outlook is running (process {', '.join(map(str, ids))})." if ids else ""
    if settings["mode"] == "undo":
        backup = state["backup"]
        if backup is None:
            raise ScriptError(_no_backup_text(state["user"]))
        summary = (
            f"Latest backup of {state['user']}'s Outlook profile: {state['backup_folder']} (made {backup['created']}; "
            f"profiles {names(backup['profiles'])}, {count(len(backup['ost_files']), 'OST file')}); now: profiles "
            f"{names(state['profiles'])}.{running}"
        )
        ok = False
    else:
        ok = nothing_to_reset(state, settings)
        if ok:
            summary = (
                f"{state['user']} has no Outlook profile and no OST file here: Outlook creates a new profile at its "
                "next start, nothing to reset."
            )
        else:
            default = "none" if state["default_profile"] is None else f"'{state['default_profile']}'"
            summary = (
                f"{state['user']}'s Outlook: profiles {names(state['profiles'])} (default {default}), "
                f"{count(len(state['ost_files']), 'OST file')}, {count(len(state['pst_files']), 'PST file')}; "
                f"registry hive {state['hive']}.{running}"
            )
    if not ok and ids and not settings["close_outlook"]:
        summary += " Outlook must be closed first: ask the user to close it, or run again with --close-outlook."
    return {"ok": ok, "state": state, "summary": summary}


def _no_backup_text(login: str) -> str:
    return f"There is no l1fix backup of {login}'s Outlook profile to restore on this computer (nothing to undo)."


def new_backup_folder(host: WindowsHost, user: dict[str, Any], stamp: str) -> str:
    """New-BackupFolder."""
    user_root = f"{BACKUP_ROOT}\\{user['leaf']}"
    folder, n = f"{user_root}\\{stamp}", 1
    while folder in host.outlook.backups:
        n += 1
        folder = f"{user_root}\\{stamp}-{n}"
    if not host.outlook.backup_writable:
        raise ScriptError(f"Access to the path '{folder}' is denied.")
    host.outlook.backups[folder] = {}
    return folder


def export_profiles(host: WindowsHost, root: str, folder: str, file_name: str) -> None:
    """reg export of the Profiles key: a .reg file whose key paths name the hive root."""
    host.outlook.backups[folder][file_name] = {"root": root, "profiles": copy.deepcopy(_hive(host, root).profiles)}


def remove_outlook_profile(host: WindowsHost, root: str) -> None:
    hive = _hive(host, root)
    hive.profiles = None
    hive.default_profile = None


def _now() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


def outlook_reset(host: WindowsHost, settings: dict[str, Any]) -> dict[str, Any]:
    """Invoke-OutlookReset: back up first (nothing removed when that fails), then remove and rename."""
    user = find_user_profile(host, settings["user"])
    files = outlook_files(host, user)
    fix: dict[str, Any] = {
        "summary": "",
        "mode": "reset",
        "backup_folder": None,
        "backup_error": None,
        "profiles_removed": [],
        "ost_renamed": [],
        "ost_not_renamed": [],
        "pst_untouched": list(files["pst"]),
        "outlook_closed": [],
    }
    if not settings["close_outlook"]:
        assert_outlook_closed(host, user, False)  # refuse before anything is written
    hive = mount_user_hive(host, user)
    try:
        try:
            folder = new_backup_folder(host, user, settings["stamp"])
        except ScriptError as exc:
            fix["backup_error"] = str(exc)
            fix["summary"] = (
                f"Could not write the backup of {user['login']}'s Outlook profile under {BACKUP_ROOT} "
                f"({fix['backup_error']}): nothing was removed; free the disk or escalate."
            )
            return fix
        fix["outlook_closed"] = assert_outlook_closed(host, user, settings["close_outlook"])
        registry = outlook_registry(host, hive["root"])
        suffix = ".l1fix-" + folder.rpartition("\\")[2] + ".bak"
        renames = [] if settings["keep_ost"] else [{"from": n, "to": n + suffix} for n in files["ost"]]
        if registry["profiles_key"]:
            export_profiles(host, hive["root"], folder, "profiles.reg")
        host.outlook.backups[folder]["manifest.json"] = {
            "user": user["login"],
            "sid": user["sid"],
            "created": _now(),
            "hive_root": hive["root"],
            "profiles": registry["profiles"],
            "default_profile": registry["default_profile"],
            "ost_renamed": renames,
            "pst_files": list(files["pst"]),
            "restored": None,
        }
        fix["backup_folder"] = folder
        remove_outlook_profile(host, hive["root"])
        fix["profiles_removed"] = registry["profiles"]
        for rename in renames:
            ost = _file(host, f"{files['folder']}\\{rename['from']}")
            if ost is None or ost.locked:
                fix["ost_not_renamed"].append(rename["from"])
                continue
            ost.path = f"{files['folder']}\\{rename['to']}"
            fix["ost_renamed"].append(rename["to"])
    finally:
        dismount_user_hive(host, hive)
    summary = (
        f"Removed {user['login']}'s Outlook profiles {names(fix['profiles_removed'])}: Outlook creates a new profile "
        "at its next start"
    )
    if settings["keep_ost"]:
        summary += "; OST files kept (--keep-ost)"
    else:
        summary += f"; {count(len(fix['ost_renamed']), 'OST file')} renamed to *{suffix}"
    if fix["ost_not_renamed"]:
        summary += f"; {count(len(fix['ost_not_renamed']), 'OST file')} in use not renamed"
    if fix["outlook_closed"]:
        summary += f"; Outlook closed (process {', '.join(map(str, fix['outlook_closed']))})"
    fix["summary"] = (
        f"{summary}; {count(len(fix['pst_untouched']), 'PST file')} left untouched. Backup: {folder} "
        "(outlook-reset --undo restores it)."
    )
    return fix


def outlook_undo(host: WindowsHost, settings: dict[str, Any]) -> dict[str, Any]:
    """Invoke-OutlookUndo: the latest backup back; what Outlook recreated since is kept aside."""
    user = find_user_profile(host, settings["user"])
    latest = latest_backup(host, user)
    if latest is None:
        raise ScriptError(_no_backup_text(user["login"]))
    closed = assert_outlook_closed(host, user, settings["close_outlook"])
    manifest, folder, stamp = latest["manifest"], latest["folder"], settings["stamp"]
    files = outlook_files(host, user)
    fix: dict[str, Any] = {
        "summary": "",
        "mode": "undo",
        "backup_folder": folder,
        "recreated_profiles": [],
        "recreated_saved_to": None,
        "profiles_restored": list(manifest["profiles"]),
        "ost_restored": [],
        "ost_set_aside": [],
        "outlook_closed": closed,
    }
    hive = mount_user_hive(host, user)
    try:
        now = outlook_registry(host, hive["root"])
        if now["profiles_key"]:
            fix["recreated_saved_to"] = f"{folder}\\recreated-{stamp}.reg"
            export_profiles(host, hive["root"], folder, f"recreated-{stamp}.reg")
            fix["recreated_profiles"] = now["profiles"]
        remove_outlook_profile(host, hive["root"])
        exported = host.outlook.backups[folder].get("profiles.reg")
        if exported is not None:  # imported where the hive is loaded now, whatever root it was exported from
            _hive(host, hive["root"]).profiles = copy.deepcopy(exported["profiles"])
        if manifest["default_profile"] is not None:
            _hive(host, hive["root"]).default_profile = manifest["default_profile"]
    finally:
        dismount_user_hive(host, hive)
    for rename in manifest["ost_renamed"]:
        saved = _file(host, f"{files['folder']}\\{rename['to']}")
        if saved is None:
            continue
        original = _file(host, f"{files['folder']}\\{rename['from']}")
        if original is not None:
            aside = f"{rename['from']}.l1fix-{stamp}.bak"
            original.path = f"{files['folder']}\\{aside}"
            fix["ost_set_aside"].append(aside)
        saved.path = f"{files['folder']}\\{rename['from']}"
        fix["ost_restored"].append(rename["from"])
    manifest["restored"] = _now()
    summary = (
        f"Restored {user['login']}'s Outlook profiles {names(fix['profiles_restored'])} and "
        f"{count(len(fix['ost_restored']), 'OST file')} from {folder}"
    )
    if fix["recreated_saved_to"] is not None:
        summary += (
            f"; the profiles Outlook had recreated since ({names(fix['recreated_profiles'])}) were replaced, saved to "
            f"{fix['recreated_saved_to']}"
        )
    if fix["ost_set_aside"]:
        summary += f"; OST files recreated since renamed aside: {', '.join(fix['ost_set_aside'])}"
    fix["summary"] = summary + "."
    return fix


def outlook_verify(state: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    if settings["mode"] == "undo":
        backup = settings["backup"]
        missing = [n for n in backup["ost_files"] if n not in state["ost_files"]]
        profiles_back = sorted(state["profiles"]) == sorted(backup["profiles"])
        ok = profiles_back and state["default_profile"] == backup["default_profile"] and not missing
        if ok:
            summary = (
                f"{state['user']}'s Outlook profiles {names(state['profiles'])} and "
                f"{count(len(backup['ost_files']), 'OST file')} are back."
            )
        else:
            summary = (
                f"{state['user']}'s Outlook profile is not as backed up: profiles {names(state['profiles'])} "
                f"(expected {names(backup['profiles'])}), missing OST files: {names(missing)}."
            )
        return {"ok": ok, "state": state, "summary": summary}
    state["pst_untouched"] = sorted(state["pst_files"]) == sorted(settings["pst_before"])
    ok = nothing_to_reset(state, settings) and state["backup_folder"] is not None
    if ok:
        summary = (
            f"{state['user']} has no Outlook profile left: Outlook creates a new one at its next start; backup in "
            f"{state['backup_folder']}; {count(len(state['pst_files']), 'PST file')} untouched."
        )
    else:
        summary = (
            f"{state['user']}'s Outlook profile is still there: profiles {names(state['profiles'])}, "
            f"{count(len(state['ost_files']), 'OST file')}."
        )
    return {"ok": ok, "state": state, "summary": summary}


# --------------------------------------------------------------------------- problem hosts

GB = 1024**3


def add_outlook_user(host: WindowsHost, login: str, *, logged_on: bool = True, ost: bool = True) -> str:
    """A user with a profile here and an Outlook profile 'Outlook' (the default); returns their data folder."""
    from l1fix.lab.windows import TempFile, UserProfile

    sid = DIRECTORY[login]
    leaf = login.partition("\\")[2]
    host.profiles.append(UserProfile(login, sid, f"C:\\Users\\{leaf}"))
    host.outlook.hives[sid] = OutlookHive({"Outlook": {"001f6700": "Microsoft Exchange"}}, "Outlook")
    if logged_on:
        host.outlook.loaded.add(sid)
    data = f"C:\\Users\\{leaf}\\AppData\\Local\\Microsoft\\Outlook"
    if ost:
        host.files.append(TempFile(f"{data}\\{leaf}@corp.com.ost", 2 * GB, 0.1))
    return data


def _pc024(host: WindowsHost) -> None:
    add_outlook_user(host, "CORP\\jdupont")


def _pc025(host: WindowsHost) -> None:
    add_outlook_user(host, "CORP\\amartin")
    host.outlook.processes[7312] = DIRECTORY["CORP\\amartin"]


def _pc026(host: WindowsHost) -> None:
    add_outlook_user(host, "CORP\\mleroy", logged_on=False)


def _pc027(host: WindowsHost) -> None:
    add_outlook_user(host, "CORP\\bnguyen")


def _pc028(host: WindowsHost) -> None:
    add_outlook_user(host, "CORP\\jdupont")
    host.outlook.backup_writable = False


def _pc029(host: WindowsHost) -> None:
    from l1fix.lab.windows import TempFile

    data = add_outlook_user(host, "CORP\\pmartin")
    host.files.append(TempFile(f"{data}\\archive 2019.pst", 3 * GB, 400))
    host.files.append(TempFile("C:\\Users\\pmartin\\Documents\\Outlook Files\\Personal.pst", GB, 30))


TWINS: dict[str, Twin] = {"outlook_reset": run_outlook_reset}
PROBLEMS: dict[str, Callable[[WindowsHost], None]] = {
    "PC024": _pc024,
    "PC025": _pc025,
    "PC026": _pc026,
    "PC027": _pc027,
    "PC028": _pc028,
    "PC029": _pc029,
}
