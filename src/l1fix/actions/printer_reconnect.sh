#!/bin/sh
# l1fix printer-reconnect - CUPS (Linux, macOS), POSIX sh.
#
# check  : the scheduler must answer (lpstat -r) at the server the CUPS clients use, else an
#          error: nothing is touched. The queue params.printer: does it exist and with which
#          device URI (lpstat -v), is it enabled (lpstat -p), does it accept jobs (lpstat -a),
#          its pending jobs (lpstat -o).
#          ok = it exists, is enabled, accepts jobs, and prints to params.uri when one is given.
# fix    : the URI: params.uri, else the queue's own. With none (a queue that does not exist
#          and no uri) nothing is changed: l1fix asks for --uri. A queue that exists is set
#          right in place (lpadmin -p QUEUE -v URI): its driver, options and pending jobs stay,
#          and a URI the scheduler refuses leaves the old one. A queue that does not exist is
#          added with that URI and no driver (a raw queue). Then it is enabled (cupsenable) and
#          made to accept jobs (cupsaccept).
# verify : as check.
#
# Input : L1FIX_REQUEST (base64 of UTF-8 JSON {action, steps, params, before}), set by the
#         data line ahead of this script (l1fix/targets/shell.py).
#         params: printer (the queue, required), uri (optional).
# Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.
# Values from the input are data only: each reaches lpstat, lpadmin, cupsenable or cupsaccept
# as one quoted argument, never as an option (a leading "-" is refused).
#
# From _common.sh (sent ahead of this script; sets LC_ALL=C, so lpstat speaks one language):
# l1fix_run_steps, l1fix_fail, l1fix_param, l1fix_observation, l1fix_json_string, l1fix_count.

pr_bool() {
    # VALUE(true|false): as JSON.
    if [ "$1" = true ]; then printf 'true'; else printf 'false'; fi
}

pr_read() {
    # The queue's state: PR_EXISTS PR_URI PR_ENABLED PR_ACCEPTING (true|false) and PR_STATE (JSON).
    PR_SERVER=$(lpstat -H 2>/dev/null) || PR_SERVER=''
    [ -n "$PR_SERVER" ] || PR_SERVER='unknown server'
    if [ "$(lpstat -r 2>/dev/null)" != 'scheduler is running' ]; then
        l1fix_fail "The CUPS scheduler ($PR_SERVER) does not answer: nothing was changed. Run spooler-restart, or escalate."
    fi
    PR_EXISTS=false PR_URI='' PR_ENABLED=false PR_ACCEPTING=false PR_JOBS=0
    if pr_device=$(lpstat -v "$PR_QUEUE" 2>/dev/null) && [ -n "$pr_device" ]; then
        PR_EXISTS=true
        PR_URI=${pr_device#*: }  # "device for QUEUE: URI"; a queue name holds no space
        case $PR_URI in /*) PR_URI="file:$PR_URI" ;; esac  # lpstat shows file:PATH as PATH
        case $(lpstat -p "$PR_QUEUE" 2>/dev/null) in
            'printer '*' disabled since '*) ;;
            'printer '*) PR_ENABLED=true ;;
        esac
        case $(lpstat -a "$PR_QUEUE" 2>/dev/null) in
            *' not accepting requests'*) ;;
            *' accepting requests'*) PR_ACCEPTING=true ;;
        esac
        PR_JOBS=$(lpstat -o "$PR_QUEUE" 2>/dev/null | grep -c '^[^[:space:]]')
    fi
    PR_STATE="{\"queue\":$(l1fix_json_string "$PR_QUEUE"),\"server\":$(l1fix_json_string "$PR_SERVER")"
    PR_STATE="$PR_STATE,\"exists\":$(pr_bool "$PR_EXISTS"),\"uri\":$(l1fix_json_string "$PR_URI")"
    PR_STATE="$PR_STATE,\"wanted_uri\":$(l1fix_json_string "$PR_WANTED_URI")"
    PR_STATE="$PR_STATE,\"enabled\":$(pr_bool "$PR_ENABLED"),\"accepting\":$(pr_bool "$PR_ACCEPTING")"
    PR_STATE="$PR_STATE,\"pending_jobs\":$PR_JOBS}"
}

pr_judge() {
    # STEP(check|verify): l1fix_observation from the state just read.
    if [ "$1" = verify ]; then pr_still='still '; else pr_still=''; fi
    if [ "$PR_EXISTS" != true ]; then
        l1fix_observation false "$PR_STATE" "CUPS queue $PR_QUEUE ${pr_still}does not exist."
        return 0
    fi
    pr_wrong=''
    [ "$PR_ENABLED" = true ] || pr_wrong='is disabled'
    [ "$PR_ACCEPTING" = true ] || pr_wrong="$pr_wrong${pr_wrong:+, }does not accept jobs"
    if [ -n "$PR_WANTED_URI" ] && [ "$PR_URI" != "$PR_WANTED_URI" ]; then
        pr_wrong="$pr_wrong${pr_wrong:+, }prints to $PR_URI, not $PR_WANTED_URI"
    fi
    if [ -z "$pr_wrong" ]; then
        l1fix_observation true "$PR_STATE" "CUPS queue $PR_QUEUE ($PR_URI) is enabled and accepts jobs."
    else
        l1fix_observation false "$PR_STATE" "CUPS queue $PR_QUEUE ($PR_URI) ${pr_still}$pr_wrong."
    fi
}

pr_fix() {
    pr_read
    pr_uri=${PR_WANTED_URI:-$PR_URI}
    pr_set=false pr_enabled=false pr_accepting=false PR_ERROR=''
    if [ -z "$pr_uri" ]; then
        pr_summary="Nothing changed: CUPS queue $PR_QUEUE does not exist and no device URI was given (--uri)."
    elif pr_out=$(lpadmin -p "$PR_QUEUE" -v "$pr_uri" 2>&1); then
        pr_set=true
        if [ "$PR_EXISTS" != true ]; then
            pr_summary="Added CUPS queue $PR_QUEUE with $pr_uri, without a driver (a raw queue)."
        elif [ "$PR_URI" != "$pr_uri" ]; then
            pr_summary="Set CUPS queue $PR_QUEUE to print to $pr_uri (was $PR_URI); its driver and jobs are kept."
        else
            pr_summary="CUPS queue $PR_QUEUE keeps $pr_uri, its driver and its jobs."
        fi
        if cupsenable "$PR_QUEUE"; then pr_enabled=true; fi
        if cupsaccept "$PR_QUEUE"; then pr_accepting=true; fi
        if [ "$pr_enabled" = true ] && [ "$pr_accepting" = true ]; then
            pr_summary="$pr_summary Enabled it and made it accept jobs."
        else
            pr_summary="$pr_summary cupsenable or cupsaccept failed."
        fi
    else
        PR_ERROR="lpadmin -p $PR_QUEUE -v $pr_uri: $pr_out"
        pr_summary="The scheduler refused $pr_uri for CUPS queue $PR_QUEUE ($pr_out): nothing was changed."
    fi
    L1FIX_OUT="{\"summary\":$(l1fix_json_string "$pr_summary"),\"uri\":$(l1fix_json_string "$pr_uri")"
    L1FIX_OUT="$L1FIX_OUT,\"existed\":$(pr_bool "$PR_EXISTS"),\"set\":$(pr_bool "$pr_set")"
    L1FIX_OUT="$L1FIX_OUT,\"enabled\":$(pr_bool "$pr_enabled"),\"accepting\":$(pr_bool "$pr_accepting")"
    L1FIX_OUT="$L1FIX_OUT,\"error\":$(l1fix_json_string "$PR_ERROR")}"
}

l1fix_prepare() {
    l1fix_param printer ''
    PR_QUEUE=$L1FIX_PARAM
    l1fix_param uri ''
    PR_WANTED_URI=$L1FIX_PARAM
    case $PR_QUEUE in
        '' | -* | *[[:space:]/#,@?\\\'\"]*)
            l1fix_fail "'$PR_QUEUE' is not a CUPS queue name (printable, none of: space / \\ ? ' \" # , @)."
            ;;
    esac
    case $PR_WANTED_URI in
        -* | *[[:space:]]*) l1fix_fail "'$PR_WANTED_URI' is not a device URI." ;;
    esac
    command -v lpstat >/dev/null 2>&1 || l1fix_fail 'CUPS is not installed on this computer (no lpstat).'
    command -v lpadmin >/dev/null 2>&1 || l1fix_fail 'The CUPS administration tools are not installed (no lpadmin).'
}

l1fix_check() {
    pr_read
    pr_judge check
}

l1fix_fix() {
    pr_fix
}

l1fix_verify() {
    pr_read
    pr_judge verify
}

l1fix_run_steps
