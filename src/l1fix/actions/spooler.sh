#!/bin/sh
# l1fix spooler-restart - CUPS (Linux, macOS), POSIX sh.
#
# check  : the scheduler answers (lpstat -r) at the server the CUPS clients use (lpstat -H:
#          CUPS_SERVER from the login environment, else client.conf, else the local one);
#          every queue enabled and accepting (lpstat -p, lpstat -a); the jobs not completed
#          (lpstat -l -o) and which are stuck: held, on a disabled queue, or older than
#          stuck_minutes. ok = scheduler answers, no paused queue, no stuck job.
# fix    : when the scheduler does not answer and it is this computer's own (the default
#          socket or localhost:631), restart it (launchctl on macOS; systemctl, else service)
#          and wait until it answers; a scheduler elsewhere is never
#          restarted. Then cancel the stuck jobs (cancel, else lprm), re-enable the disabled
#          queues (cupsenable) and make the rejecting ones accept jobs (cupsaccept). A scheduler
#          that answers is not restarted: cancelling and re-enabling is what unblocks it, and a
#          restart would cut off every other job being printed.
# verify : ok = scheduler answers, no paused queue, no stuck job.
#
# Input : L1FIX_REQUEST (base64 of UTF-8 JSON {action, steps, params, before}), set by the
#         data line ahead of this script (l1fix/targets/shell.py).
#         Optional params: stuck_minutes (default 30; 0 = do not judge jobs by age),
#         timeout_s (default 60: how long to wait for a restarted scheduler).
# Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.
# Values from the input are data only: nothing here builds code or a command from them.
#
# From _common.sh (sent ahead of this script; sets LC_ALL=C, so lpstat speaks one language):
# l1fix_run_steps, l1fix_fail, l1fix_int_param, l1fix_observation, l1fix_json_string,
# l1fix_json_lines, l1fix_count.

# lpstat's three listings (marked "@@ printers", "@@ accepting", "@@ jobs") in, and out lines
# "KEY VALUE": queues, jobs, paused_names, stuck_ids (JSON lists), counts (queues jobs stuck
# paused), and what the fix does: cancel ID, enable QUEUE, accept QUEUE; error MESSAGE.
# Job dates are lpstat's local time in the C locale ("Fri Dec  4 21:38:14 2026"), compared
# with SP_NOW ("YYYY MM DD HH MM", local time too); an unreadable date has age -1.
# shellcheck disable=SC2016 # an awk program: its $ are awk's
SPOOLER_LPSTAT_READER='
function esc(s,   out, c, i) {
    out = ""
    for (i = 1; i <= length(s); i++) { c = substr(s, i, 1); out = out ((c in ESC) ? ESC[c] : c) }
    return "\"" out "\""
}
function minutes(y, mo, d, h, mi) {
    if (mo <= 2) { y--; mo += 12 }
    return ((365 * y + int(y / 4) - int(y / 100) + int(y / 400) + int((153 * (mo - 3) + 2) / 5) + d) * 24 + h) * 60 + mi
}
function listing_error(line) { if (line !~ /No destinations added/) print "error " line }
BEGIN {
    for (i = 1; i < 32; i++) ESC[sprintf("%c", i)] = sprintf("\\u%04x", i)
    ESC["\""] = "\\\""; ESC["\\"] = "\\\\"
    split("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec", names, " ")
    for (i = 1; i <= 12; i++) MONTH[names[i]] = i
    split(ENVIRON["SP_NOW"], now, " ")
    NOW = minutes(now[1] + 0, now[2] + 0, now[3] + 0, now[4] + 0, now[5] + 0)
    LIMIT = ENVIRON["SP_STUCK_MINUTES"] + 0
}
/^@@ / { section = $2; current = ""; next }
/^lpstat: / { if (section == "jobs") print "error " $0; else listing_error($0); next }
section == "printers" && /^printer / {
    current = $2
    if (!(current in ENABLED)) { NQ++; QUEUE[NQ] = current }
    ENABLED[current] = ($3 == "disabled") ? 0 : 1
    next
}
section == "printers" && /^\t/ { if (current != "" && !(current in MESSAGE)) MESSAGE[current] = substr($0, 2); next }
section == "accepting" && / accepting requests since / { ACCEPTING[$1] = ($2 == "not") ? 0 : 1; next }
section == "jobs" && /^[^ \t]/ {
    NJ++; JOB[NJ] = $1
    q = $1; sub(/-[0-9]+$/, "", q); JQUEUE[NJ] = q
    owner = ""; for (i = 2; i <= NF - 6; i++) owner = owner (owner == "" ? "" : " ") $i
    JOWNER[NJ] = owner; JALERTS[NJ] = ""; JAGE[NJ] = -1
    if (NF >= 7 && ($(NF - 3) in MONTH) && $(NF - 1) ~ /^[0-9][0-9]?:[0-9][0-9]:[0-9][0-9]$/ && $NF ~ /^[0-9][0-9][0-9][0-9]$/) {
        split($(NF - 1), t, ":")
        age = NOW - minutes($NF + 0, MONTH[$(NF - 3)], $(NF - 2) + 0, t[1] + 0, t[2] + 0)
        JAGE[NJ] = (age < 0) ? 0 : age
    }
    next
}
section == "jobs" && /^\tAlerts: / { JALERTS[NJ] = substr($0, 10); next }
section == "jobs" && /^\tqueued for / { JQUEUE[NJ] = substr($0, 13); next }
END {
    queues = ""; paused = ""; npaused = 0
    for (i = 1; i <= NQ; i++) {
        q = QUEUE[i]; accepting = (q in ACCEPTING) ? ACCEPTING[q] : 1
        queues = queues (i > 1 ? "," : "") "{\"name\":" esc(q) ",\"enabled\":" (ENABLED[q] ? "true" : "false") \
            ",\"accepting\":" (accepting ? "true" : "false") ",\"message\":" esc(MESSAGE[q]) "}"
        if (!ENABLED[q]) print "enable " q
        if (!accepting) print "accept " q
        if (!ENABLED[q] || !accepting) { paused = paused (npaused ? "," : "") esc(q); npaused++ }
    }
    jobs = ""; stuck = ""; nstuck = 0
    for (j = 1; j <= NJ; j++) {
        q = JQUEUE[j]; why = ""
        if (JALERTS[j] ~ /hold|held/) why = "held"
        if ((q in ENABLED) && !ENABLED[q]) why = why (why == "" ? "" : ", ") "queue disabled"
        if (LIMIT > 0 && JAGE[j] >= LIMIT) why = why (why == "" ? "" : ", ") "older than " LIMIT " min"
        jobs = jobs (j > 1 ? "," : "") "{\"id\":" esc(JOB[j]) ",\"printer\":" esc(q) ",\"owner\":" esc(JOWNER[j]) \
            ",\"status\":" esc(JALERTS[j]) ",\"age_minutes\":" JAGE[j] ",\"stuck\":" (why == "" ? "false" : "true") \
            ",\"why\":" esc(why) "}"
        if (why != "") { stuck = stuck (nstuck ? "," : "") esc(JOB[j]); nstuck++; print "cancel " JOB[j] }
    }
    print "queues [" queues "]"
    print "jobs [" jobs "]"
    print "paused_names [" paused "]"
    print "stuck_ids [" stuck "]"
    print "counts " NQ + 0 " " NJ + 0 " " nstuck " " npaused
}
'

spooler_read() {
    # The scheduler's state: SP_SERVER, SP_RUNNING (true|false), SP_STATE (JSON), the counts
    # SP_NQUEUES SP_NJOBS SP_NSTUCK SP_NPAUSED, SP_PAUSED_JSON, and the fix's lists
    # SP_CANCEL, SP_ENABLE, SP_ACCEPT (one name a line).
    SP_SERVER=$(lpstat -H 2>/dev/null) || SP_SERVER=''
    [ -n "$SP_SERVER" ] || SP_SERVER='unknown server'
    SP_RUNNING=false
    if [ "$(lpstat -r 2>/dev/null)" = 'scheduler is running' ]; then
        SP_RUNNING=true
    fi
    SP_NQUEUES=0 SP_NJOBS=0 SP_NSTUCK=0 SP_NPAUSED=0
    SP_CANCEL='' SP_ENABLE='' SP_ACCEPT='' SP_ERRORS=''
    sp_queues='[]' sp_jobs='[]' SP_PAUSED_JSON='[]' sp_stuck='[]'
    if [ "$SP_RUNNING" = true ]; then
        sp_listing=$(
            echo '@@ printers'
            lpstat -p 2>&1
            echo '@@ accepting'
            lpstat -a 2>&1
            echo '@@ jobs'
            lpstat -l -o 2>&1
        )
        sp_parsed=$(printf '%s\n' "$sp_listing" | SP_NOW=$(date '+%Y %m %d %H %M') SP_STUCK_MINUTES=$SP_STUCK_MINUTES awk "$SPOOLER_LPSTAT_READER")
        while IFS=' ' read -r sp_key sp_value; do
            case $sp_key in
                queues) sp_queues=$sp_value ;;
                jobs) sp_jobs=$sp_value ;;
                paused_names) SP_PAUSED_JSON=$sp_value ;;
                stuck_ids) sp_stuck=$sp_value ;;
                counts) read -r SP_NQUEUES SP_NJOBS SP_NSTUCK SP_NPAUSED <<EOF
$sp_value
EOF
                    ;;
                cancel) SP_CANCEL="$SP_CANCEL$sp_value
" ;;
                enable) SP_ENABLE="$SP_ENABLE$sp_value
" ;;
                accept) SP_ACCEPT="$SP_ACCEPT$sp_value
" ;;
                error) SP_ERRORS="$SP_ERRORS${SP_ERRORS:+; }$sp_value" ;;
            esac
        done <<EOF
$sp_parsed
EOF
    fi
    if [ "$SP_RUNNING" = true ]; then sp_scheduler='"running"'; else sp_scheduler='"not running"'; fi
    SP_STATE="{\"scheduler\":$sp_scheduler,\"server\":$(l1fix_json_string "$SP_SERVER")"
    SP_STATE="$SP_STATE,\"queues\":$sp_queues,\"paused_queues\":$SP_PAUSED_JSON,\"jobs\":$sp_jobs"
    SP_STATE="$SP_STATE,\"stuck_jobs\":$SP_NSTUCK,\"stuck_job_ids\":$sp_stuck,\"stuck_minutes\":$SP_STUCK_MINUTES"
    SP_STATE="$SP_STATE,\"errors\":$(l1fix_json_string "$SP_ERRORS")}"
}

spooler_problems() {
    # A sentence part: "queue q1 is paused and 2 print jobs are stuck".
    sp_text=''
    if [ "$SP_NPAUSED" -gt 0 ]; then
        sp_names=$(printf '%s' "$SP_ENABLE$SP_ACCEPT" | awk 'NF && !seen[$0]++' | paste -s -d ',' - | sed 's/,/, /g')
        if [ "$SP_NPAUSED" -eq 1 ]; then sp_text="queue $sp_names is paused"; else sp_text="queues $sp_names are paused"; fi
    fi
    if [ "$SP_NSTUCK" -gt 0 ]; then
        if [ "$SP_NSTUCK" -eq 1 ]; then sp_verb='is'; else sp_verb='are'; fi
        sp_text="$sp_text${sp_text:+ and }$(l1fix_count "$SP_NSTUCK" 'print job') $sp_verb stuck"
    fi
    if [ -n "$SP_ERRORS" ]; then
        sp_text="$sp_text${sp_text:+; }lpstat reported: $SP_ERRORS"
    fi
    printf '%s' "$sp_text"
}

spooler_judge() {
    # STEP(check|verify): l1fix_observation from the state just read.
    if [ "$SP_RUNNING" != true ]; then
        if [ "$1" = check ]; then
            sp_summary="The CUPS scheduler ($SP_SERVER) does not answer."
        else
            sp_summary="The CUPS scheduler ($SP_SERVER) still does not answer."
        fi
        l1fix_observation false "$SP_STATE" "$sp_summary"
        return 0
    fi
    sp_in_queue="$(l1fix_count "$SP_NJOBS" 'job') in the queue"
    if [ "$SP_NPAUSED" -eq 0 ] && [ "$SP_NSTUCK" -eq 0 ] && [ -z "$SP_ERRORS" ]; then
        sp_summary="The CUPS scheduler answers, $(l1fix_count "$SP_NQUEUES" 'queue') ready, no stuck print job ($sp_in_queue)."
        l1fix_observation true "$SP_STATE" "$sp_summary"
    elif [ "$1" = check ]; then
        l1fix_observation false "$SP_STATE" "The CUPS scheduler answers but $(spooler_problems) ($sp_in_queue)."
    else
        l1fix_observation false "$SP_STATE" "The CUPS scheduler answers but still $(spooler_problems) ($sp_in_queue)."
    fi
}

spooler_is_local() {
    # Is SERVER this computer's own scheduler (the one systemctl, service or launchctl restarts)?
    case $1 in
        /run/cups/cups.sock | /var/run/cups/cups.sock | /private/var/run/cupsd | /var/run/cupsd) return 0 ;;
        localhost | localhost:631 | 127.0.0.1 | 127.0.0.1:631 | '[::1]:631' | ::1) return 0 ;;
    esac
    return 1
}

spooler_restart() {
    # Restart this computer's scheduler; SP_RESTART_METHOD, or SP_RESTART_ERROR.
    SP_RESTART_METHOD=''
    if [ "$(uname -s)" = Darwin ]; then
        if launchctl kickstart -k system/org.cups.cupsd; then SP_RESTART_METHOD='launchctl'; fi
    elif command -v systemctl >/dev/null 2>&1 && systemctl restart cups; then
        SP_RESTART_METHOD='systemctl'
    elif command -v service >/dev/null 2>&1 && service cups restart; then
        SP_RESTART_METHOD='service'
    fi
    if [ -z "$SP_RESTART_METHOD" ]; then
        SP_RESTART_ERROR='no way to restart CUPS worked (launchctl on macOS, else systemctl, else service)'
        return 0
    fi
    sp_waited=0
    while [ "$(lpstat -r 2>/dev/null)" != 'scheduler is running' ] && [ "$sp_waited" -lt "$SP_TIMEOUT" ]; do
        sleep 1
        sp_waited=$((sp_waited + 1))
    done
}

spooler_names() {
    # NOUN LIST(one a line): "queue q1", "queues q1, q2", or nothing for an empty list.
    sp_names=$(printf '%s' "$2" | paste -s -d ',' - | sed 's/,/, /g')
    case $sp_names in
        '') ;;
        *,*) printf '%ss %s' "$1" "$sp_names" ;;
        *) printf '%s %s' "$1" "$sp_names" ;;
    esac
}

spooler_say() {
    # BEFORE NOUN LIST AFTER: add "BEFORE queue q1AFTER" to sp_summary, unless LIST is empty.
    [ -n "$3" ] || return 0
    sp_summary="$sp_summary${sp_summary:+ }$1 $(spooler_names "$2" "$3")$4"
}

spooler_cancel() {
    # JOB-ID (queue-N): cancel it, with cancel, else lprm.
    case $1 in -*) return 1 ;; esac  # never taken for an option
    if command -v cancel >/dev/null 2>&1; then
        cancel "$1"
    else
        lprm -P "${1%-*}" "${1##*-}"
    fi
}

spooler_fix() {
    spooler_read
    SP_RESTART_METHOD='' SP_RESTART_ERROR=''
    if [ "$SP_RUNNING" != true ]; then
        if spooler_is_local "$SP_SERVER"; then
            spooler_restart
            spooler_read
        else
            SP_RESTART_ERROR="$SP_SERVER is not this computer's own scheduler: l1fix does not restart it"
        fi
    fi
    sp_cancelled='' sp_not_cancelled='' sp_enabled='' sp_not_enabled='' sp_accepting='' sp_not_accepting=''
    if [ "$SP_RUNNING" = true ]; then
        for sp_id in $SP_CANCEL; do
            if spooler_cancel "$sp_id"; then
                sp_cancelled="$sp_cancelled$sp_id
"
            else
                sp_not_cancelled="$sp_not_cancelled$sp_id
"
            fi
        done
        for sp_queue in $SP_ENABLE; do
            case $sp_queue in -*) sp_ok=false ;; *) if cupsenable "$sp_queue"; then sp_ok=true; else sp_ok=false; fi ;; esac
            if [ "$sp_ok" = true ]; then sp_enabled="$sp_enabled$sp_queue
"; else sp_not_enabled="$sp_not_enabled$sp_queue
"; fi
        done
        for sp_queue in $SP_ACCEPT; do
            case $sp_queue in -*) sp_ok=false ;; *) if cupsaccept "$sp_queue"; then sp_ok=true; else sp_ok=false; fi ;; esac
            if [ "$sp_ok" = true ]; then sp_accepting="$sp_accepting$sp_queue
"; else sp_not_accepting="$sp_not_accepting$sp_queue
"; fi
        done
    fi

    sp_summary=''
    if [ -n "$SP_RESTART_METHOD" ]; then
        if [ "$SP_RUNNING" = true ]; then
            sp_summary="Restarted the CUPS scheduler ($SP_RESTART_METHOD)."
        else
            sp_summary="Restarted the CUPS scheduler ($SP_RESTART_METHOD) but it does not answer after $SP_TIMEOUT s."
        fi
    elif [ -n "$SP_RESTART_ERROR" ]; then
        sp_summary="The CUPS scheduler does not answer and was not restarted: $SP_RESTART_ERROR; escalate."
    fi
    sp_n=$(printf '%s' "$sp_cancelled" | grep -c .)
    if [ "$sp_n" -gt 0 ]; then
        sp_summary="$sp_summary${sp_summary:+ }Cancelled $(l1fix_count "$sp_n" 'stuck print job') ($(printf '%s' "$sp_cancelled" | paste -s -d ',' - | sed 's/,/, /g'))."
    fi
    spooler_say 'Re-enabled' queue "$sp_enabled" '.'
    spooler_say 'Made' queue "$sp_accepting" ' accept jobs again.'
    spooler_say 'Could not cancel' job "$sp_not_cancelled" '.'
    spooler_say 'Could not re-enable' queue "$sp_not_enabled" '.'
    spooler_say 'Could not make' queue "$sp_not_accepting" ' accept jobs.'
    if [ -z "$sp_summary" ]; then
        sp_summary='Nothing to change: no stuck job and no paused queue were found this time.'
    fi
    L1FIX_OUT="{\"summary\":$(l1fix_json_string "$sp_summary"),\"server\":$(l1fix_json_string "$SP_SERVER")"
    L1FIX_OUT="$L1FIX_OUT,\"scheduler_restarted\":$([ -n "$SP_RESTART_METHOD" ] && echo true || echo false)"
    L1FIX_OUT="$L1FIX_OUT,\"restart_method\":$(l1fix_json_string "$SP_RESTART_METHOD")"
    L1FIX_OUT="$L1FIX_OUT,\"restart_error\":$(l1fix_json_string "$SP_RESTART_ERROR")"
    L1FIX_OUT="$L1FIX_OUT,\"jobs_cancelled\":$(l1fix_json_lines "$sp_cancelled")"
    L1FIX_OUT="$L1FIX_OUT,\"jobs_not_cancelled\":$(l1fix_json_lines "$sp_not_cancelled")"
    L1FIX_OUT="$L1FIX_OUT,\"queues_enabled\":$(l1fix_json_lines "$sp_enabled")"
    L1FIX_OUT="$L1FIX_OUT,\"queues_not_enabled\":$(l1fix_json_lines "$sp_not_enabled")"
    L1FIX_OUT="$L1FIX_OUT,\"queues_accepting\":$(l1fix_json_lines "$sp_accepting")"
    L1FIX_OUT="$L1FIX_OUT,\"queues_not_accepting\":$(l1fix_json_lines "$sp_not_accepting")}"
}

l1fix_prepare() {
    l1fix_int_param stuck_minutes 30 0 525600
    SP_STUCK_MINUTES=$L1FIX_PARAM
    l1fix_int_param timeout_s 60 1 3600
    SP_TIMEOUT=$L1FIX_PARAM
    command -v lpstat >/dev/null 2>&1 || l1fix_fail 'CUPS is not installed on this computer (no lpstat).'
}

l1fix_check() {
    spooler_read
    spooler_judge check
}

l1fix_fix() {
    spooler_fix
}

l1fix_verify() {
    spooler_read
    spooler_judge verify
}

l1fix_run_steps
