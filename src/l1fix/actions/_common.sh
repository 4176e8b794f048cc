# l1fix shared library - POSIX sh. Not a fix: no action runs it on its own.
#
# Sent on stdin ahead of every l1fix shell script, in the same brace group (see
# l1fix/targets/shell.py), after the data line that sets L1FIX_REQUEST (base64 of UTF-8 JSON
# {action, steps, params, before}) and L1FIX_TIMEOUT (whole seconds).
# Definitions only: settings and functions. A script defines l1fix_prepare, l1fix_check,
# l1fix_fix and l1fix_verify, and ends with one l1fix_run_steps call.
# Values from the request are data only: read with awk, never evaluated, never part of a
# command line except as one quoted argument.

# shellcheck disable=SC2317 # a library: each script calls only the functions it needs
set -f                      # no pathname expansion: unquoted words stay words
LC_ALL=C                    # tools answer in one language and with one date format
PATH=$PATH:/usr/sbin:/sbin  # admin tools (cupsenable...) for a login without sbin in PATH
export LC_ALL PATH

# ----------------------------------------------------------------------- the script's frame

l1fix_run_steps() {
    # Decode the request, run the steps it asks for in its order, stop after a check that
    # finds nothing wrong, and print exactly one JSON document on the real stdout: a key per
    # step run, or {"error": "..."} and exit code 1 (l1fix_fail). Everything the steps print
    # goes to stderr. Each step sets L1FIX_OUT (a JSON object); check and verify set it with
    # l1fix_observation.
    exec 3>&1
    l1fix_start_watchdog
    l1fix_decode_request
    l1fix_steps=$(l1fix_request_value steps ''; printf x)
    l1fix_steps=${l1fix_steps%x}
    case $l1fix_steps in '!'*) l1fix_fail "malformed request: ${l1fix_steps#!}" ;; esac
    l1fix_prepare </dev/null >&2
    l1fix_result=''
    for l1fix_step in $l1fix_steps; do
        L1FIX_OUT='' L1FIX_OK=''
        case $l1fix_step in
            check) l1fix_check </dev/null >&2 ;;
            fix) l1fix_fix </dev/null >&2 ;;
            verify) l1fix_verify </dev/null >&2 ;;
            *) l1fix_fail "Unknown step '$l1fix_step' (expected check, fix or verify)." ;;
        esac
        [ -n "$L1FIX_OUT" ] || l1fix_fail "the $l1fix_step step returned nothing"
        l1fix_result="$l1fix_result${l1fix_result:+,}\"$l1fix_step\":$L1FIX_OUT"
        if [ "$l1fix_step" = check ] && [ "$L1FIX_OK" = true ]; then
            break  # nothing wrong: no fix, no verify
        fi
    done
    l1fix_stop_watchdog
    printf '{%s}\n' "$l1fix_result" >&3
    exit 0
}

l1fix_fail() {
    # The script's one JSON document is this error; exit code 1.
    l1fix_stop_watchdog
    printf '{"error":%s}\n' "$(l1fix_json_string "$1")" >&3
    exit 1
}

l1fix_start_watchdog() {
    # After L1FIX_TIMEOUT seconds, kill this script's process group (the script and every
    # command it started): a timed-out run must not go on changing the host after l1fix has
    # given up on it. l1fix_stop_watchdog ends it, and its sleep, when the script is done.
    l1fix_watchdog=''
    case ${L1FIX_TIMEOUT:-} in '' | *[!0-9]*) return 0 ;; esac
    (
        trap 'kill "$l1fix_sleep" 2>/dev/null; exit 0' TERM
        sleep "$L1FIX_TIMEOUT" &
        l1fix_sleep=$!
        wait "$l1fix_sleep" && kill -s KILL 0
    ) </dev/null >/dev/null 2>&1 3>&- &
    l1fix_watchdog=$!
}

l1fix_stop_watchdog() {
    if [ -n "${l1fix_watchdog:-}" ]; then
        kill "$l1fix_watchdog" 2>/dev/null
        l1fix_watchdog=''
    fi
}

# ----------------------------------------------------------------------- the request

l1fix_decode_request() {
    # L1FIX_JSON = the decoded request. base64 -d (GNU, BusyBox, macOS 13+), -D (older
    # macOS), or openssl.
    case ${L1FIX_REQUEST-} in
        '' | *[!A-Za-z0-9+/=]*) l1fix_fail 'no request: L1FIX_REQUEST is empty or not base64' ;;
    esac
    L1FIX_JSON=$(printf '%s' "$L1FIX_REQUEST" | base64 -d 2>/dev/null) ||
        L1FIX_JSON=$(printf '%s' "$L1FIX_REQUEST" | base64 -D 2>/dev/null) ||
        L1FIX_JSON=$(printf '%s' "$L1FIX_REQUEST" | openssl base64 -d -A 2>/dev/null) ||
        L1FIX_JSON=''
    [ -n "$L1FIX_JSON" ] || l1fix_fail 'cannot decode the request (no base64 -d, base64 -D or openssl on this host)'
}

l1fix_request_value() {
    # SECTION NAME: print what the request holds. SECTION steps: each step on its own line.
    # SECTION params: "=" and the value of params.NAME (a string decoded, a number or
    # true/false as written), nothing when absent or null. "!" and a reason when malformed.
    printf '%s' "$L1FIX_JSON" | L1FIX_SECTION=$1 L1FIX_NAME=$2 awk "$L1FIX_JSON_READER"
}

l1fix_param() {
    # NAME DEFAULT: set L1FIX_PARAM to params.NAME, or DEFAULT when absent or null.
    l1fix_value=$(l1fix_request_value params "$1"; printf x)
    l1fix_value=${l1fix_value%x}
    case $l1fix_value in
        =*) L1FIX_PARAM=${l1fix_value#=} ;;
        '!'*) l1fix_fail "malformed request: ${l1fix_value#!}" ;;
        *) L1FIX_PARAM=$2 ;;
    esac
}

l1fix_int_param() {
    # NAME DEFAULT MIN MAX: set L1FIX_PARAM to a whole number from MIN to MAX, else fail.
    l1fix_param "$1" "$2"
    case $L1FIX_PARAM in
        '' | *[!0-9]*) l1fix_fail "parameter $1 must be a whole number from $3 to $4" ;;
    esac
    if [ "${#L1FIX_PARAM}" -gt 9 ] || [ "$L1FIX_PARAM" -lt "$3" ] || [ "$L1FIX_PARAM" -gt "$4" ]; then
        l1fix_fail "parameter $1 must be a whole number from $3 to $4"
    fi
}

# A JSON reader in awk: the request's steps, or one member of its params. Early exit once
# found. \u escapes become UTF-8 bytes (awk runs with LC_ALL=C); a NUL is refused.
# shellcheck disable=SC2016 # an awk program: its $ are awk's
L1FIX_JSON_READER='
function fail(msg) { printf "!%s", msg; FAILED = 1; exit }
function skip_ws() { while (P <= N && index(" \t\r\n", substr(S, P, 1))) P++ }
function expect(c) { skip_ws(); if (substr(S, P, 1) != c) fail("expected " c " at byte " P); P++ }
function hex(h,   i, v, d) {
    v = 0
    for (i = 1; i <= 4; i++) {
        d = index("0123456789abcdef", tolower(substr(h, i, 1)))
        if (d == 0) fail("bad \\u escape at byte " P)
        v = v * 16 + d - 1
    }
    return v
}
function utf8(c) {
    if (c == 0) fail("a NUL character is not allowed")
    if (c < 128) return sprintf("%c", c)
    if (c < 2048) return sprintf("%c%c", 192 + int(c / 64), 128 + c % 64)
    if (c < 65536) return sprintf("%c%c%c", 224 + int(c / 4096), 128 + int(c / 64) % 64, 128 + c % 64)
    return sprintf("%c%c%c%c", 240 + int(c / 262144), 128 + int(c / 4096) % 64, 128 + int(c / 64) % 64, 128 + c % 64)
}
function str(   out, c, e, lo) {
    expect("\"")
    out = ""
    while (1) {
        if (P > N) fail("unterminated string")
        if (match(substr(S, P, 512), /^[^"\\]+/)) { out = out substr(S, P, RLENGTH); P += RLENGTH; continue }
        c = substr(S, P, 1)
        if (c == "\"") { P++; return out }
        e = substr(S, P + 1, 1); P += 2
        if (e == "n") out = out "\n"
        else if (e == "t") out = out "\t"
        else if (e == "r") out = out "\r"
        else if (e == "b") out = out "\b"
        else if (e == "f") out = out "\f"
        else if (e == "u") {
            c = hex(substr(S, P, 4)); P += 4
            if (c >= 55296 && c < 56320 && substr(S, P, 2) == "\\u") {
                lo = hex(substr(S, P + 2, 4))
                if (lo >= 56320 && lo < 57344) { c = 65536 + (c - 55296) * 1024 + (lo - 56320); P += 6 }
            }
            out = out utf8(c)
        }
        else if (e == "\"" || e == "\\" || e == "/") out = out e
        else fail("bad escape at byte " P)
    }
}
function value(   c) {
    skip_ws(); c = substr(S, P, 1)
    if (c == "\"") { TYPE = "string"; return str() }
    if (c == "{") { members(""); TYPE = "object"; return "" }
    if (c == "[") { elements(0); TYPE = "array"; return "" }
    if (substr(S, P, 4) == "true") { P += 4; TYPE = "bool"; return "true" }
    if (substr(S, P, 5) == "false") { P += 5; TYPE = "bool"; return "false" }
    if (substr(S, P, 4) == "null") { P += 4; TYPE = "null"; return "" }
    if (match(substr(S, P, 64), /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?/)) {
        c = substr(S, P, RLENGTH); P += RLENGTH; TYPE = "number"; return c
    }
    fail("malformed JSON at byte " P)
}
function members(wanted,   key, v, c) {
    expect("{"); skip_ws()
    if (substr(S, P, 1) == "}") { P++; return 0 }
    while (1) {
        key = str(); expect(":")
        if (wanted != "" && key == wanted) return 1
        v = value()
        skip_ws(); c = substr(S, P, 1); P++
        if (c == "}") return 0
        if (c != ",") fail("expected , or } at byte " (P - 1))
        skip_ws()
    }
}
function elements(show,   v, c) {
    expect("["); skip_ws()
    if (substr(S, P, 1) == "]") { P++; return }
    while (1) {
        v = value()
        if (show) {
            if (TYPE != "string" || v ~ /\n/) fail("steps must be a list of names")
            printf "%s\n", v
        }
        skip_ws(); c = substr(S, P, 1); P++
        if (c == "]") return
        if (c != ",") fail("expected , or ] at byte " (P - 1))
    }
}
{ S = S (NR > 1 ? "\n" : "") $0 }
END {
    if (FAILED) exit
    N = length(S); P = 1
    section = ENVIRON["L1FIX_SECTION"]; name = ENVIRON["L1FIX_NAME"]
    skip_ws(); if (substr(S, P, 1) != "{") fail("the request is not a JSON object")
    if (!members(section)) exit
    if (section == "steps") { skip_ws(); if (substr(S, P, 1) != "[") fail("steps must be a list"); elements(1); exit }
    skip_ws(); if (substr(S, P, 1) != "{") fail(section " must be an object")
    if (!members(name)) exit
    v = value()
    if (TYPE == "object" || TYPE == "array") fail("parameter " name " is not a single value")
    if (TYPE != "null") printf "=%s", v
}
'

# ----------------------------------------------------------------------- JSON out

l1fix_json_string() {
    # VALUE: print it as a JSON string (UTF-8 passes through; control characters escaped).
    L1FIX_S=$1 awk 'BEGIN {
        for (i = 1; i < 32; i++) esc[sprintf("%c", i)] = sprintf("\\u%04x", i)
        esc["\""] = "\\\""; esc["\\"] = "\\\\"; esc["\n"] = "\\n"; esc["\t"] = "\\t"; esc["\r"] = "\\r"
        s = ENVIRON["L1FIX_S"]; out = ""
        while (s != "") {
            if (match(s, /^[^"\\\001-\037]+/)) { out = out substr(s, 1, RLENGTH); s = substr(s, RLENGTH + 1); continue }
            c = substr(s, 1, 1); out = out ((c in esc) ? esc[c] : c); s = substr(s, 2)
        }
        printf "\"%s\"", out
    }'
}

l1fix_json_lines() {
    # VALUE: print its non-empty lines as a JSON list of strings.
    l1fix_list=''
    l1fix_ifs=$IFS
    IFS='
'
    for l1fix_line in $1; do
        l1fix_list="$l1fix_list${l1fix_list:+,}$(l1fix_json_string "$l1fix_line")"
    done
    IFS=$l1fix_ifs
    printf '[%s]' "$l1fix_list"
}

l1fix_observation() {
    # OK(true|false) STATE(JSON object) SUMMARY: what check and verify return.
    L1FIX_OK=$1
    L1FIX_OUT="{\"ok\":$1,\"state\":$2,\"summary\":$(l1fix_json_string "$3")}"
}

l1fix_count() {
    # N NOUN: "1 job", "2 jobs".
    if [ "$1" -eq 1 ]; then printf '1 %s' "$2"; else printf '%s %ss' "$1" "$2"; fi
}
