#!/bin/sh
# l1fix temp-clean - Linux and macOS, POSIX sh (find, stat, df, and lsof or fuser).
#
# check  : the folders /tmp and /var/tmp (by their real path: /private/tmp... on macOS), walked
#          with `find -P -xdev`: no symbolic link is ever followed, no other file system entered.
#          An old file is a regular file (never a socket, FIFO, device or link) neither
#          modified nor read for params.older-than-days days (mtime and atime; ctime is not
#          used: a copy, chmod or rename sets it without anybody using the file), owned by
#          params.user when given, and outside
#            - a folder changed within those days: a folder a program still works in keeps
#              all it holds, even files copied or unpacked there with old dates;
#            - the system's own entries: systemd-private-*, snap-private-tmp, the X11 socket
#              folders (.X11-unix, .ICE-unix, .XIM-unix, .font-unix, .Test-unix), .X*-lock.
#          An old file held open by a process (lsof, else fuser) is in use: counted, kept.
#          An old empty folder is an empty folder unchanged for those days.
#          Free space of each folder's file system (df -P). ok = no old file (not in use) and
#          no old empty folder.
# fix    : delete them: the files with rm, the folders with rmdir (never a folder with anything
#          in it), from inside their folder (find -execdir): a folder swapped for a link while
#          this runs is not followed. A folder emptied now has just changed: it goes next time.
#          A file opened between the scan and the delete (a short window) is not seen as in use.
#          With neither lsof nor fuser on the host, nothing is deleted (nothing can tell which
#          files are in use) and the summary says what to install.
# verify : ok = no old file (not in use) and no old empty folder left, and none that the fix
#          of this run could not delete (a folder it changed is not walked again).
#
# Input : L1FIX_REQUEST (base64 of UTF-8 JSON {action, steps, params, before}), set by the
#         data line ahead of this script (l1fix/targets/shell.py).
#         Optional params: user (a login of this host), older-than-days (default 1).
# Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.
# The login is data only: one argument of id and a number for find, never code.
# File names are never parsed as words: find passes them to stat and rm itself; a name with
# a line break in its path is never a candidate.
#
# From _common.sh (sent ahead of this script; sets LC_ALL=C and set -f):
# l1fix_run_steps, l1fix_fail, l1fix_param, l1fix_int_param, l1fix_observation,
# l1fix_json_string, l1fix_count.

TC_NL='
'

temp_walk() {
    # DIR EXPRESSION...: find in DIR, never below a folder changed within the age limit or the
    # system's own entries (pruned: nothing under them is looked at), never a path with a line
    # break in it.
    tc_dir=$1
    shift
    find -P "$tc_dir" -xdev -mindepth 1 \
        \( -path "$tc_dir/systemd-private-*" -o -path "$tc_dir/snap-private-tmp" -o -path "$tc_dir/.X11-unix" \
        -o -path "$tc_dir/.ICE-unix" -o -path "$tc_dir/.XIM-unix" -o -path "$tc_dir/.font-unix" \
        -o -path "$tc_dir/.Test-unix" -o \( -type d -mmin "-$TC_MINUTES" \) \) -prune \
        -o ! -path "*$TC_NL*" "$@"
}

temp_find() {
    # DIR scan: print "F SIZE PATH" for each old file, "D SIZE PATH" for each old empty folder.
    # DIR delete IN_USE: delete them in one walk (a folder is judged before anything in it
    # changes), but the paths listed in the file IN_USE.
    tc_where=$1 tc_what=$2 tc_lock="$1/.X*-lock" tc_in_use=${3:-}
    set --
    [ -z "$TC_UID" ] || set -- -user "$TC_UID"
    if [ "$tc_what" = scan ]; then
        temp_walk "$tc_where" "$@" \( \( -type f -mmin "+$TC_MINUTES" -amin "+$TC_MINUTES" ! -path "$tc_lock" \
            -exec stat "$TC_STAT_OPTION" "F $TC_STAT_FORMAT" {} + \) \
            -o \( -type d -empty -mmin "+$TC_MINUTES" -prune -exec stat "$TC_STAT_OPTION" "D $TC_STAT_FORMAT" {} + \) \)
        return
    fi
    while IFS= read -r tc_path; do
        set -- "$@" ! -path "$(printf '%s\n' "$tc_path" | sed 's/[][*?\\]/\\&/g')"
    done <"$tc_in_use"
    temp_walk "$tc_where" "$@" \( \( -type f -mmin "+$TC_MINUTES" -amin "+$TC_MINUTES" ! -path "$tc_lock" \
        -execdir rm -f {} + \) -o \( -type d -empty -mmin "+$TC_MINUTES" -prune -execdir rmdir {} + \) \)
}

temp_pick_check() {
    # [without-lsof]: TC_IN_USE_CHECK, how files in use are found: lsof, else fuser, else none.
    if [ "${1:-}" != without-lsof ] && command -v lsof >/dev/null 2>&1; then
        TC_IN_USE_CHECK='lsof'
    elif command -v fuser >/dev/null 2>&1; then
        TC_IN_USE_CHECK='fuser'
    else
        TC_IN_USE_CHECK='none'
    fi
}

temp_held_open() {
    # PATH: does a process hold that file open? One lsof (or fuser) run about it.
    if [ "$TC_IN_USE_CHECK" = lsof ]; then
        lsof -w "$1" >/dev/null 2>&1
    else
        fuser -s "$1" 2>/dev/null
    fi
}

temp_open_files() {
    # TC_WORK/open: the paths processes hold open (lsof), one a line; temp_scan adds the old
    # files it finds in use one by one (temp_held_open).
    printf '\n' >"$TC_WORK/open"
    if [ "$TC_IN_USE_CHECK" = lsof ]; then
        lsof -w -n -P -F n 2>/dev/null | sed -n 's/^n//p' >>"$TC_WORK/open"
        # lsof that sees nothing, not even itself, is not usable here.
        [ "$(grep -c . "$TC_WORK/open")" -gt 0 ] || temp_pick_check without-lsof
    fi
}

temp_free() {
    # TC_FREE: free bytes of the folders' file systems, each counted once. TC_FOLDER_FREE and
    # TC_FOLDER_MOUNT: those of the folder $1.
    TC_FREE=0 tc_fs_mounts="$TC_NL"
    for tc_fs in $TC_DIRS; do
        read -r tc_fs_free tc_fs_mount <<EOF
$(df -P -k "$tc_fs" | awk 'NR == 2 { free = $4; for (i = 1; i <= 5; i++) sub(/^[^ ]+ +/, ""); printf "%.0f %s\n", free * 1024, $0 }')
EOF
        case $tc_fs_mounts in *"$TC_NL$tc_fs_mount$TC_NL"*) ;; *)
            tc_fs_mounts="$tc_fs_mounts$tc_fs_mount$TC_NL"
            TC_FREE=$((TC_FREE + tc_fs_free)) ;;
        esac
        if [ "$tc_fs" = "${1:-}" ]; then TC_FOLDER_FREE=$tc_fs_free TC_FOLDER_MOUNT=$tc_fs_mount; fi
    done
}

temp_scan() {
    # For each folder i: TC_WORK/i.old ("SIZE PATH" of its old files not in use), i.in_use
    # (paths), i.dirs (old empty folders). TC_STATE (JSON); totals TC_OLD, TC_BYTES,
    # TC_IN_USE, TC_EMPTY; TC_FREE.
    temp_open_files
    TC_OLD=0 TC_BYTES=0 TC_IN_USE=0 TC_EMPTY=0 tc_i=0 tc_folders=''
    for tc_folder in $TC_DIRS; do
        tc_i=$((tc_i + 1))
        temp_find "$tc_folder" scan >"$TC_WORK/$tc_i.found" 2>/dev/null
        # With fuser, ask about every old file; with lsof, about those whose name its listing
        # escapes (a byte outside printable ASCII, a backslash): they would never match.
        if [ "$TC_IN_USE_CHECK" = fuser ]; then tc_every=1; else tc_every=0; fi
        awk -v every="$tc_every" '$1 == "F" {
            line = $0; sub(/^[^ ]+ [^ ]+ /, "", line)
            if (every || line ~ /[^ -~]|\\/) print line
        }' "$TC_WORK/$tc_i.found" | while IFS= read -r tc_path; do
            if temp_held_open "$tc_path"; then printf '%s\n' "$tc_path"; fi
        done >>"$TC_WORK/open"
        for tc_list in old in_use dirs; do : >"$TC_WORK/$tc_i.$tc_list"; done
        read -r tc_n tc_bytes tc_used tc_empty <<EOF
$(awk -v prefix="$TC_WORK/$tc_i." '
    NR == FNR { open[$0] = 1; next }
    { kind = $1; size = $2; line = $0; sub(/^[^ ]+ [^ ]+ /, "", line) }
    kind == "D" { d++; print line > (prefix "dirs"); next }
    line in open { u++; print line > (prefix "in_use"); next }
    { n++; bytes += size; print size " " line > (prefix "old") }
    END { printf "%d %.0f %d %d\n", n, bytes, u, d }
' "$TC_WORK/open" "$TC_WORK/$tc_i.found")
EOF
        temp_free "$tc_folder"
        TC_OLD=$((TC_OLD + tc_n)) TC_BYTES=$((TC_BYTES + tc_bytes)) TC_IN_USE=$((TC_IN_USE + tc_used))
        TC_EMPTY=$((TC_EMPTY + tc_empty))
        tc_folders="$tc_folders${tc_folders:+,}{\"path\":$(l1fix_json_string "$tc_folder"),\"old_files\":$tc_n"
        tc_folders="$tc_folders,\"old_bytes\":$tc_bytes,\"files_in_use\":$tc_used,\"old_empty_folders\":$tc_empty"
        tc_folders="$tc_folders,\"mount\":$(l1fix_json_string "$TC_FOLDER_MOUNT"),\"free_bytes\":$TC_FOLDER_FREE}"
    done
    if [ -n "$TC_LOGIN" ]; then tc_user=$(l1fix_json_string "$TC_LOGIN"); else tc_user=null; fi
    TC_STATE="{\"older_than_days\":$TC_DAYS,\"user\":$tc_user,\"in_use_check\":\"$TC_IN_USE_CHECK\""
    TC_STATE="$TC_STATE,\"folders\":[$tc_folders],\"old_files\":$TC_OLD,\"old_bytes\":$TC_BYTES"
    TC_STATE="$TC_STATE,\"files_in_use\":$TC_IN_USE,\"old_empty_folders\":$TC_EMPTY,\"free_bytes\":$TC_FREE}"
}

temp_bytes() {
    # N: "1.5 GB", "12.0 KB", "512 bytes".
    awk -v n="$1" 'BEGIN {
        if (n >= 1073741824) printf "%.1f GB", n / 1073741824
        else if (n >= 1048576) printf "%.1f MB", n / 1048576
        else if (n >= 1024) printf "%.1f KB", n / 1024
        else printf "%d bytes", n
    }'
}

temp_found() {
    # "3 temporary files (1.5 MB) and 1 empty folder older than 1 day": what TC_OLD and TC_EMPTY count.
    tc_text=''
    [ "$TC_OLD" -eq 0 ] || tc_text="$(l1fix_count "$TC_OLD" 'temporary file') ($(temp_bytes "$TC_BYTES"))"
    [ "$TC_EMPTY" -eq 0 ] || tc_text="$tc_text${tc_text:+ and }$(l1fix_count "$TC_EMPTY" 'empty folder')"
    printf '%s older than %s' "$tc_text" "$(l1fix_count "$TC_DAYS" day)"
}

temp_judge() {
    # STEP(check|verify): l1fix_observation from the scan just made; verify also counts the files
    # the fix of this run could not delete (a folder it changed is not walked again).
    tc_where="in $(printf '%s' "$TC_DIRS" | paste -s -d ',' - | sed 's/,/ and /g')"
    tc_free="$(temp_bytes "$TC_FREE") free"
    tc_kept=''
    [ "$TC_IN_USE" -eq 0 ] || tc_kept=", $(l1fix_count "$TC_IN_USE" 'old file') in use kept"
    if [ "$1" = verify ] && [ "$TC_NOT_DELETED" -gt 0 ]; then
        l1fix_observation false "$TC_STATE" \
            "$(l1fix_count "$TC_NOT_DELETED" 'old temporary file') could not be deleted $tc_where; $tc_free."
    elif [ "$TC_OLD" -eq 0 ] && [ "$TC_EMPTY" -eq 0 ]; then
        l1fix_observation true "$TC_STATE" \
            "No temporary file older than $(l1fix_count "$TC_DAYS" day) to delete $tc_where ($tc_free$tc_kept)."
    elif [ "$1" = check ]; then
        l1fix_observation false "$TC_STATE" "$(temp_found) $tc_where; $tc_free$tc_kept."
    else
        l1fix_observation false "$TC_STATE" "$(temp_found) still $tc_where; $tc_free$tc_kept."
    fi
}

temp_delete() {
    # Delete what the scan found in each folder, never what is in use; count what is gone.
    TC_DELETED=0 TC_FREED=0 TC_NOT_DELETED=0 TC_REMOVED=0 tc_i=0
    for tc_folder in $TC_DIRS; do
        tc_i=$((tc_i + 1))
        temp_find "$tc_folder" delete "$TC_WORK/$tc_i.in_use" 2>/dev/null
        while IFS= read -r tc_line; do
            tc_path=${tc_line#* }
            if [ -e "$tc_path" ] || [ -L "$tc_path" ]; then
                TC_NOT_DELETED=$((TC_NOT_DELETED + 1))
            else
                TC_DELETED=$((TC_DELETED + 1)) TC_FREED=$((TC_FREED + ${tc_line%% *}))
            fi
        done <"$TC_WORK/$tc_i.old"
        while IFS= read -r tc_path; do
            [ -e "$tc_path" ] || TC_REMOVED=$((TC_REMOVED + 1))
        done <"$TC_WORK/$tc_i.dirs"
    done
}

temp_fix() {
    temp_scan
    tc_before=$TC_FREE
    TC_DELETED=0 TC_FREED=0 TC_NOT_DELETED=0 TC_REMOVED=0
    if [ "$TC_IN_USE_CHECK" = none ]; then
        tc_summary='Nothing deleted: neither lsof nor fuser is installed on this computer, so l1fix cannot tell which'
        tc_summary="$tc_summary files are in use; install lsof (or psmisc for fuser) and run again."
    else
        temp_delete
        temp_free
        tc_summary="Deleted $(l1fix_count "$TC_DELETED" file) ($(temp_bytes "$TC_FREED") freed)"
        [ "$TC_REMOVED" -eq 0 ] || tc_summary="$tc_summary and $(l1fix_count "$TC_REMOVED" 'empty folder')"
        tc_summary="$tc_summary; free space $(temp_bytes "$tc_before") -> $(temp_bytes "$TC_FREE")."
        [ "$TC_IN_USE" -eq 0 ] || tc_summary="$tc_summary $(l1fix_count "$TC_IN_USE" file) in use left alone."
        [ "$TC_NOT_DELETED" -eq 0 ] ||
            tc_summary="$tc_summary $(l1fix_count "$TC_NOT_DELETED" file) could not be deleted."
    fi
    L1FIX_OUT="{\"summary\":$(l1fix_json_string "$tc_summary"),\"files_deleted\":$TC_DELETED"
    L1FIX_OUT="$L1FIX_OUT,\"bytes_freed\":$TC_FREED,\"files_in_use\":$TC_IN_USE,\"files_not_deleted\":$TC_NOT_DELETED"
    L1FIX_OUT="$L1FIX_OUT,\"empty_folders_removed\":$TC_REMOVED,\"in_use_check\":\"$TC_IN_USE_CHECK\""
    L1FIX_OUT="$L1FIX_OUT,\"free_bytes_before\":$tc_before,\"free_bytes_after\":$TC_FREE}"
}

l1fix_prepare() {
    l1fix_int_param older-than-days 1 0 3650
    TC_DAYS=$L1FIX_PARAM
    TC_MINUTES=$((TC_DAYS * 1440))
    l1fix_param user ''
    TC_LOGIN=$L1FIX_PARAM TC_UID=''
    if [ -n "$TC_LOGIN" ]; then
        TC_UID=$(id -u -- "$TC_LOGIN" 2>/dev/null) || TC_UID=''
        case $TC_UID in
            '' | *[!0-9]*) l1fix_fail "User '$TC_LOGIN' does not exist on this computer: nothing of theirs to clean (check the login, or clean without --user)." ;;
        esac
    fi
    # find -execdir refuses a PATH with a relative folder in it: keep the absolute ones.
    tc_path='' tc_ifs=$IFS
    IFS=:
    for tc_entry in $PATH; do
        case $tc_entry in /*) tc_path="$tc_path${tc_path:+:}$tc_entry" ;; esac
    done
    IFS=$tc_ifs
    PATH=$tc_path
    if [ "$(uname -s)" = Darwin ]; then
        TC_STAT_OPTION=-f TC_STAT_FORMAT='%z %N'
    else
        TC_STAT_OPTION=-c TC_STAT_FORMAT='%s %n'
    fi
    temp_pick_check
    TC_DIRS='' TC_NOT_DELETED=0
    for tc_dir in /tmp /var/tmp; do
        tc_real=$(cd "$tc_dir" 2>/dev/null && pwd -P) || continue
        case "$TC_NL$TC_DIRS" in *"$TC_NL$tc_real$TC_NL"*) continue ;; esac
        TC_DIRS="$TC_DIRS$tc_real$TC_NL"
    done
    [ -n "$TC_DIRS" ] || l1fix_fail 'Neither /tmp nor /var/tmp exists on this computer.'
    TC_WORK=$(mktemp -d) || l1fix_fail 'cannot create a temporary folder (mktemp -d)'
    trap 'rm -rf "$TC_WORK"' EXIT
}

l1fix_check() {
    temp_scan
    temp_judge check
}

l1fix_fix() {
    temp_fix
}

l1fix_verify() {
    temp_scan
    temp_judge verify
}

l1fix_run_steps
