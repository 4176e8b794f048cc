#!/bin/sh
# l1fix service-restart - Linux (systemd, else service / init.d) and macOS (launchd), POSIX sh.
#
# check  : params.service exists (an error if not) and its state, from this computer's service
#          manager: launchd on macOS (the label in the system domain: launchctl print
#          system/NAME); systemd when it runs as init (/run/systemd/system exists, the test of
#          sd_booted(3)): the unit NAME (systemctl show); else the init script
#          /etc/init.d/NAME through `service NAME status` (LSB exit codes: 0 = running).
#          ok = running (systemd: active). A running service is left alone, as on Windows.
# fix    : a masked systemd unit is reported, never unmasked (verify then fails: escalate).
#          Otherwise restart it, which starts a stopped one: systemctl restart, service NAME
#          restart, launchctl kickstart -k. Then wait up to timeout_s for it to run. When it
#          does not, the reason: the restart command's last lines and, with systemd, the
#          unit's last journal lines (journalctl -u NAME -n 5 --no-pager). Needs root: l1fix
#          logs in as root or runs this with sudo -n; the check only reads.
# verify : ok = running.
#
# Input : L1FIX_REQUEST (base64 of UTF-8 JSON {action, steps, params, before}), set by the
#         data line ahead of this script (l1fix/targets/shell.py).
#         params: service; optional timeout_s (default 30).
# Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.
# The service name is data only: one quoted argument after `--` (or a fixed prefix), never
# code; a name that could read as an option or a path is refused.
#
# Commands that start a service run with stdin /dev/null and their output in a file of their
# own: a daemon that keeps what it inherited open must not hold the SSH channel open.
#
# From _common.sh (sent ahead of this script; sets LC_ALL=C):
# l1fix_run_steps, l1fix_fail, l1fix_param, l1fix_int_param, l1fix_observation,
# l1fix_json_string, l1fix_json_lines, l1fix_count.

service_manager() {
    # SV_MANAGER: launchd, systemd or sysv; else fail.
    if [ "$(uname -s)" = Darwin ]; then
        SV_MANAGER=launchd
    elif [ -d /run/systemd/system ]; then
        SV_MANAGER=systemd
    elif command -v service >/dev/null 2>&1; then
        SV_MANAGER=sysv
    else
        l1fix_fail 'No service manager found on this computer (launchd, systemd, or the service command).'
    fi
}

service_run() {
    # COMMAND...: run it detached from this script's input and output; SV_CODE is its exit
    # code, SV_OUTPUT its last 5 lines.
    sv_file=$(mktemp) || l1fix_fail 'cannot create a temporary file (mktemp)'
    "$@" </dev/null >"$sv_file" 2>&1 3>&-
    SV_CODE=$?
    SV_OUTPUT=$(tail -n 5 "$sv_file")
    rm -f "$sv_file"
}

service_read() {
    # SV_FOUND, SV_RUNNING, SV_MASKED (true|false), SV_STATUS, SV_DETAIL and SV_STATE (JSON).
    SV_FOUND=true SV_RUNNING=false SV_MASKED=false SV_STATUS='' SV_DETAIL=''
    case $SV_MANAGER in
        systemd)
            service_run systemctl show --property=LoadState --property=ActiveState --property=SubState \
                --property=Description -- "$SV_NAME"
            [ "$SV_CODE" -eq 0 ] || l1fix_fail "systemctl cannot read the unit '$SV_NAME': $SV_OUTPUT"
            sv_load='' sv_active='' sv_sub=''
            while IFS='=' read -r sv_key sv_value; do
                case $sv_key in
                    LoadState) sv_load=$sv_value ;;
                    ActiveState) sv_active=$sv_value ;;
                    SubState) sv_sub=$sv_value ;;
                    Description) SV_DETAIL=$sv_value ;;
                esac
            done <<EOF
$SV_OUTPUT
EOF
            case $sv_load in not-found | '') SV_FOUND=false ;; masked) SV_MASKED=true ;; esac
            case $sv_active in active | reloading) SV_RUNNING=true ;; esac
            SV_STATUS="$sv_active${sv_sub:+ ($sv_sub)}"
            ;;
        sysv)
            if [ ! -f "/etc/init.d/$SV_NAME" ] || [ ! -x "/etc/init.d/$SV_NAME" ]; then
                SV_FOUND=false
            else
                service_run service "$SV_NAME" status
                SV_DETAIL=$(printf '%s\n' "$SV_OUTPUT" | sed -n '$p')
                if [ "$SV_CODE" -eq 0 ]; then
                    SV_RUNNING=true SV_STATUS='running'
                else
                    SV_STATUS="not running (status exit code $SV_CODE)"
                fi
            fi
            ;;
        launchd)
            service_run launchctl print "system/$SV_NAME"
            if [ "$SV_CODE" -ne 0 ]; then
                SV_FOUND=false
            else
                SV_STATUS=$(printf '%s\n' "$SV_OUTPUT" | sed -n 's/^[[:space:]]*state = //p' | sed -n '1p')
                [ "$SV_STATUS" = running ] && SV_RUNNING=true
            fi
            ;;
    esac
    [ "$SV_FOUND" = true ] || l1fix_fail "$(service_unknown)"
    SV_STATE="{\"service\":$(l1fix_json_string "$SV_NAME"),\"manager\":\"$SV_MANAGER\""
    SV_STATE="$SV_STATE,\"status\":$(l1fix_json_string "$SV_STATUS"),\"running\":$SV_RUNNING,\"masked\":$SV_MASKED"
    SV_STATE="$SV_STATE,\"detail\":$(l1fix_json_string "$SV_DETAIL")}"
}

service_unknown() {
    case $SV_MANAGER in
        systemd) printf "Service '%s' was not found on this computer (no systemd unit of that name)." "$SV_NAME" ;;
        sysv) printf "Service '%s' was not found on this computer (no init script /etc/init.d/%s)." "$SV_NAME" "$SV_NAME" ;;
        launchd) printf "Service '%s' was not found on this computer (no launchd job system/%s)." "$SV_NAME" "$SV_NAME" ;;
    esac
}

service_judge() {
    # STEP(check|verify): l1fix_observation from the state just read.
    sv_label="Service '$SV_NAME' ($SV_MANAGER)"
    if [ "$SV_RUNNING" = true ]; then
        l1fix_observation true "$SV_STATE" "$sv_label is running."
    elif [ "$SV_MASKED" = true ]; then
        l1fix_observation false "$SV_STATE" "$sv_label is masked and $SV_STATUS; l1fix will not unmask it: escalate to L2."
    elif [ "$1" = verify ]; then
        l1fix_observation false "$SV_STATE" "$sv_label is still not running: $SV_STATUS."
    else
        l1fix_observation false "$SV_STATE" "$sv_label is not running: $SV_STATUS."
    fi
}

service_restart() {
    # Restart the service and wait until it runs; SV_COMMAND, SV_ERROR, SV_LOG (lines).
    SV_ERROR='' SV_LOG=''
    case $SV_MANAGER in
        systemd) SV_COMMAND="systemctl restart $SV_NAME" && service_run systemctl restart -- "$SV_NAME" ;;
        sysv) SV_COMMAND="service $SV_NAME restart" && service_run service "$SV_NAME" restart ;;
        launchd) SV_COMMAND="launchctl kickstart -k system/$SV_NAME" && service_run launchctl kickstart -k "system/$SV_NAME" ;;
    esac
    sv_code=$SV_CODE sv_output=$SV_OUTPUT
    service_read
    if [ "$sv_code" -eq 0 ]; then
        sv_waited=0
        while [ "$SV_RUNNING" != true ] && [ "$sv_waited" -lt "$SV_TIMEOUT" ]; do
            sleep 1
            sv_waited=$((sv_waited + 1))
            service_read
        done
    fi
    [ "$SV_RUNNING" = true ] && return 0
    if [ "$sv_code" -ne 0 ]; then
        SV_ERROR="'$SV_COMMAND' failed (exit code $sv_code)"
    else
        SV_ERROR="still $SV_STATUS $(l1fix_count "$SV_TIMEOUT" second) after '$SV_COMMAND'"
    fi
    SV_LOG=$sv_output
    if [ "$SV_MANAGER" = systemd ] && command -v journalctl >/dev/null 2>&1; then
        service_run journalctl -u "$SV_NAME" -n 5 --no-pager
        SV_LOG="$SV_LOG${SV_LOG:+
}$SV_OUTPUT"
    fi
}

service_fix() {
    service_read
    SV_COMMAND='' SV_ERROR='' SV_LOG='' sv_action=none
    if [ "$SV_MASKED" = true ]; then
        # Someone masked it on purpose: that is for L2 to undo, not L1.
        sv_summary="Service '$SV_NAME' is masked: l1fix never unmasks a service, nothing was changed; escalate to L2."
    else
        [ "$(id -u)" = 0 ] || l1fix_fail "Restarting service '$SV_NAME' needs root: log in as root, or let l1fix use sudo -n (ssh.sudo = true) with a login allowed to."
        if [ "$SV_RUNNING" = true ]; then sv_action=restarted; else sv_action=started; fi
        service_restart
        if [ -z "$SV_ERROR" ]; then
            if [ "$sv_action" = restarted ]; then sv_verb=Restarted; else sv_verb=Started; fi
            sv_summary="$sv_verb service '$SV_NAME' ($SV_COMMAND)."
        else
            sv_summary="Tried to start service '$SV_NAME' but it is not running: $SV_ERROR."
            sv_last=$(printf '%s\n' "$SV_LOG" | sed '/^[[:space:]]*$/d' | sed -n '$p')
            [ -z "$sv_last" ] || sv_summary="$sv_summary Last output: $sv_last"
        fi
    fi
    L1FIX_OUT="{\"summary\":$(l1fix_json_string "$sv_summary"),\"service\":$(l1fix_json_string "$SV_NAME")"
    L1FIX_OUT="$L1FIX_OUT,\"manager\":\"$SV_MANAGER\",\"action\":\"$sv_action\",\"masked\":$SV_MASKED"
    L1FIX_OUT="$L1FIX_OUT,\"command\":$(l1fix_json_string "$SV_COMMAND"),\"start_error\":$(l1fix_json_string "$SV_ERROR")"
    L1FIX_OUT="$L1FIX_OUT,\"log\":$(l1fix_json_lines "$SV_LOG"),\"status\":$(l1fix_json_string "$SV_STATUS")}"
}

l1fix_prepare() {
    l1fix_param service ''
    SV_NAME=$L1FIX_PARAM
    case $SV_NAME in
        '') l1fix_fail "The parameter 'service' (a service name) is missing." ;;
        -* | *[!A-Za-z0-9_.@:+-]*) l1fix_fail "'$SV_NAME' is not a service name l1fix restarts on Linux or macOS." ;;
    esac
    l1fix_int_param timeout_s 30 1 3600
    SV_TIMEOUT=$L1FIX_PARAM
    service_manager
}

l1fix_check() {
    service_read
    service_judge check
}

l1fix_fix() {
    service_fix
}

l1fix_verify() {
    service_read
    service_judge verify
}

l1fix_run_steps
