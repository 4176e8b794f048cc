#!/bin/sh
# l1fix diagnose - Linux, macOS, POSIX sh. Read-only: it changes nothing on the computer.
#
# check  : the readings l1fix/actions/diagnose.py judges (its suggestions are computed there,
#          the same way for every OS; the print queue comes from spooler-restart's own check):
#          uptime (/proc/uptime, else sysctl kern.boottime); sessions (who); free space per
#          disk filesystem (df -P -k: "/" and /dev devices, loop devices left out; the ones
#          holding /, /tmp and /var/tmp are the system ones); failed units (systemctl, when
#          systemd runs) or, on macOS, launchd jobs that exited with an error (launchctl list);
#          pending reboot (/var/run/reboot-required); addresses and default gateways (ip, else
#          ifconfig and route on macOS) and DNS servers (/etc/resolv.conf); with
#          params.network-probe, one ping (1 s) to each gateway and DNS server configured here
#          and nowhere else, and a lookup of the search domain (getent); the clock against
#          params.technician_utc; critical journal entries of the last 24 h and kernel disk
#          errors of the last 7 days (journalctl, when present). ok = true: the readings
#          themselves judge nothing.
# fix    : none: diagnose only reads (an error if asked).
# verify : none (an error if asked).
#
# Input : L1FIX_REQUEST (base64 of UTF-8 JSON {action, steps, params, before}), set by the
#         data line ahead of this script (l1fix/targets/shell.py).
#         Optional params: network-probe (default true), technician_utc (YYYY-MM-DDTHH:MM:SSZ).
# Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.
# Values from the input are data only: nothing here builds code or a command from them.
#
# From _common.sh (sent ahead of this script; sets LC_ALL=C): l1fix_run_steps, l1fix_fail,
# l1fix_param, l1fix_observation, l1fix_json_string.

DG_TIME='+%Y-%m-%dT%H:%M:%SZ'
DG_CRITICAL_HOURS=24
DG_DISK_DAYS=7
# Kernel messages of a failing disk or a damaged file system.
DG_DISK_ERRORS='I/O error, dev (sd|hd|vd|nvme|mmcblk)|Medium Error|Unrecovered read error|critical medium error|failed command: (READ|WRITE)|EXT4-fs error|XFS .*(corruption|metadata I/O error)|BTRFS .*(error|corrupt)'

# awk functions shared by the readers below: esc(s) is s as a JSON string, num(s) a JSON number
# or null.
# shellcheck disable=SC2016 # awk programs: their $ are awk's
DG_AWK_LIB='
function esc(s,   out, c, i) {
    out = ""
    for (i = 1; i <= length(s); i++) { c = substr(s, i, 1); out = out ((c in ESC) ? ESC[c] : c) }
    return "\"" out "\""
}
function num(s) { return (s ~ /^-?[0-9]+(\.[0-9]+)?$/) ? s : "null" }
BEGIN { for (i = 1; i < 32; i++) ESC[sprintf("%c", i)] = sprintf("\\u%04x", i); ESC["\""] = "\\\""; ESC["\\"] = "\\\\" }
'

dg_awk() {
    # PROGRAM: awk with the shared functions; reads stdin.
    awk "$DG_AWK_LIB$1"
}

dg_list() {
    # Lines in, a JSON list of strings out.
    # shellcheck disable=SC2016
    dg_awk 'NF { out = out (n++ ? "," : "") esc($0) } END { printf "[%s]", out }'
}

dg_utc() {
    # EPOCH: that time as UTC text (GNU date -d, else BSD date -r).
    date -u -d "@$1" "$DG_TIME" 2>/dev/null || date -u -r "$1" "$DG_TIME" 2>/dev/null
}

dg_uptime() {
    DG_NOW=$(date -u +%s)
    dg_up=''
    if [ -r /proc/uptime ]; then
        dg_up=$(awk '{ printf "%d", $1 }' /proc/uptime)
    else
        # shellcheck disable=SC2016
        dg_boot=$(sysctl -n kern.boottime 2>/dev/null | awk -F '[ ,={}]+' '{ for (i = 1; i < NF; i++) if ($i == "sec") { print $(i + 1); exit } }')
        case $dg_boot in '' | *[!0-9]*) ;; *) dg_up=$((DG_NOW - dg_boot)) ;; esac
    fi
    if [ -n "$dg_up" ]; then
        DG_UPTIME=$dg_up
        DG_LAST_BOOT=$(l1fix_json_string "$(dg_utc $((DG_NOW - dg_up)))")
    else
        DG_UPTIME=null DG_LAST_BOOT=null
    fi
}

dg_sessions() {
    # shellcheck disable=SC2016
    who 2>/dev/null | dg_awk 'NF >= 2 {
        out = out (n++ ? "," : "") "{\"user\":" esc($1) ",\"session\":" esc($2) ",\"id\":null,\"state\":\"Active\"}"
    } END { printf "[%s]", out }'
}

dg_volumes() {
    dg_system=$(df -P -k / /tmp /var/tmp 2>/dev/null | awk 'NR > 1 { print $NF }' | sort -u | paste -s -d '|' -)
    # shellcheck disable=SC2016
    df -P -k 2>/dev/null | DG_SYSTEM="|$dg_system|" dg_awk 'NR > 1 && NF >= 6 {
        mount = $6; for (i = 7; i <= NF; i++) mount = mount " " $i
        if (mount != "/" && ($1 !~ /^\/dev\// || $1 ~ /^\/dev\/loop/ || mount ~ /^\/System\/Volumes\/(VM|Preboot|Update|xarts|iSCPreboot|Hardware)/)) next
        if ($1 in SEEN) next
        SEEN[$1] = 1
        size = $2 * 1024; free = $4 * 1024; room = $3 + $4
        percent = (room > 0) ? sprintf("%.1f", 100 * $4 / room) : "null"
        sys = (index(ENVIRON["DG_SYSTEM"], "|" mount "|") > 0) ? "true" : "false"
        out = out (n++ ? "," : "") "{\"name\":" esc(mount) ",\"size_bytes\":" sprintf("%.0f", size) \
            ",\"free_bytes\":" sprintf("%.0f", free) ",\"free_percent\":" percent ",\"system\":" sys "}"
    } END { printf "[%s]", out }'
}

dg_services() {
    # Lines "NAME<tab>DESCRIPTION<tab>START TYPE<tab>STATUS<tab>EXIT CODE", then as JSON.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl list-units --failed --plain --no-legend --no-pager 2>/dev/null | while read -r dg_unit _ _ _ dg_desc; do
            case $dg_unit in *.*) ;; *) continue ;; esac
            dg_enabled=$(systemctl is-enabled -- "$dg_unit" 2>/dev/null) || dg_enabled=${dg_enabled:-unknown}
            printf '%s\t%s\t%s\tfailed\t\n' "${dg_unit%.service}" "$dg_desc" "$dg_enabled"
        done
    elif [ "$(uname -s)" = Darwin ] && command -v launchctl >/dev/null 2>&1; then
        # shellcheck disable=SC2016
        launchctl list 2>/dev/null | awk 'NR > 1 && $1 == "-" && $2 ~ /^[1-9][0-9]*$/ { printf "%s\t\tlaunchd\texited\t%s\n", $3, $2 }'
    fi | dg_awk 'BEGIN { FS = "\t" } NF >= 4 {
        out = out (n++ ? "," : "") "{\"name\":" esc($1) ",\"display_name\":" esc($2) ",\"start_type\":" esc($3) \
            ",\"status\":" esc($4) ",\"exit_code\":" num($5) "}"
    } END { printf "[%s]", out }'
}

dg_pending_reboot() {
    if [ -f /var/run/reboot-required ]; then
        dg_pkgs=$(sort -u /var/run/reboot-required.pkgs 2>/dev/null | paste -s -d ',' - | sed 's/,/, /g')
        printf '%s\n' "/var/run/reboot-required${dg_pkgs:+ ($dg_pkgs)}"
    fi | dg_list
}

dg_network_lines() {
    # Lines "addr IF ADDRESS", "gw IF ADDRESS", "dns ADDRESS", "domain NAME".
    if command -v ip >/dev/null 2>&1; then
        # shellcheck disable=SC2016
        ip -o addr show scope global 2>/dev/null | awk '$3 == "inet" || $3 == "inet6" { print "addr", $2, $4 }'
        # shellcheck disable=SC2016
        { ip -4 route show default 2>/dev/null; ip -6 route show default 2>/dev/null; } |
            awk '{ gw = ""; dev = ""; for (i = 1; i < NF; i++) { if ($i == "via") gw = $(i + 1); if ($i == "dev") dev = $(i + 1) }
                   if (gw != "") print "gw", (dev == "" ? "-" : dev), gw }'
    elif [ "$(uname -s)" = Darwin ]; then
        # shellcheck disable=SC2016
        ifconfig 2>/dev/null | awk '/^[^ \t]/ { dev = $1; sub(/:$/, "", dev) }
            ($1 == "inet" || $1 == "inet6") && $2 !~ /^(127\.|::1|fe80:)/ { print "addr", dev, $2 }'
        # shellcheck disable=SC2016
        route -n get default 2>/dev/null | awk '$1 == "gateway:" { gw = $2 } $1 == "interface:" { dev = $2 }
            END { if (gw != "") print "gw", (dev == "" ? "-" : dev), gw }'
    fi
    if [ -r /etc/resolv.conf ]; then
        # shellcheck disable=SC2016
        awk '$1 == "nameserver" && NF >= 2 { print "dns", $2 }
             ($1 == "search" || $1 == "domain") && NF >= 2 && !done { print "domain", $2; done = 1 }' /etc/resolv.conf
    fi
}

dg_ping() {
    # ADDRESS: one echo request, 1 s (-W is seconds on Linux, milliseconds on macOS: -t there).
    case $1 in -* | '') return 1 ;; esac
    if [ "$(uname -s)" = Darwin ]; then
        ping -c 1 -t 1 "$1" >/dev/null 2>&1
    else
        ping -c 1 -W 1 "$1" >/dev/null 2>&1
    fi
}

dg_network() {
    dg_lines=$(dg_network_lines)
    dg_probes=''
    dg_lookup=''
    if [ "$DG_PROBE" = true ]; then
        if command -v ping >/dev/null 2>&1; then
            # shellcheck disable=SC2016
            for dg_target in $(printf '%s\n' "$dg_lines" | awk '$1 == "gw" { print "gateway=" $3 } $1 == "dns" { print "dns=" $2 }' | awk '!seen[$0]++'); do
                if dg_ping "${dg_target#*=}"; then dg_ok=true; else dg_ok=false; fi
                dg_probes="$dg_probes${dg_target%%=*} ${dg_target#*=} $dg_ok
"
            done
        fi
        # shellcheck disable=SC2016
        dg_domain=$(printf '%s\n' "$dg_lines" | awk '$1 == "domain" { print $2; exit }')
        if [ -n "$dg_domain" ] && command -v getent >/dev/null 2>&1; then
            case $dg_domain in
                -*) ;;
                *) if getent hosts "$dg_domain" >/dev/null 2>&1; then dg_lookup="$dg_domain true"; else dg_lookup="$dg_domain false"; fi ;;
            esac
        fi
    fi
    # shellcheck disable=SC2016
    printf '%s\n@@ probes\n%s\n@@ lookup\n%s\n' "$dg_lines" "$dg_probes" "$dg_lookup" | DG_PROBE=$DG_PROBE dg_awk '
        function add(list, item) { return list (list == "" ? "" : ",") item }
        /^@@ / { section = $2; next }
        section == "" && $1 == "addr" { if (!($2 in ADDR)) { NI++; IF[NI] = $2 } ADDR[$2] = add(ADDR[$2], esc($3)) }
        section == "" && $1 == "gw" { if (!(($3) in G)) { G[$3] = 1; gws = add(gws, esc($3)) } GW[$2] = add(GW[$2], esc($3)) }
        section == "" && $1 == "dns" && !(($2) in D) { D[$2] = 1; dns = add(dns, esc($2)) }
        section == "probes" && NF == 3 { probes = add(probes, "{\"address\":" esc($2) ",\"role\":" esc($1) ",\"reachable\":" $3 "}") }
        section == "lookup" && NF == 2 { lookup = "{\"name\":" esc($1) ",\"ok\":" $2 ",\"error\":" ($2 == "true" ? "null" : "\"getent found no address\"") "}" }
        END {
            for (i = 1; i <= NI; i++) {
                d = IF[i]
                adapters = add(adapters, "{\"name\":" esc(d) ",\"addresses\":[" ADDR[d] "],\"gateways\":[" GW[d] GW["-"] \
                    "],\"dns_servers\":[" dns "],\"dhcp\":null}")
            }
            printf "{\"adapters\":[%s],\"gateways\":[%s],\"dns_servers\":[%s],\"probed\":%s,\"reachable\":[%s],\"name_resolution\":%s}",
                adapters, gws, dns, (ENVIRON["DG_PROBE"] == "true" ? "true" : "false"), probes, (lookup == "" ? "null" : lookup)
        }'
}

dg_clock() {
    # The host's UTC time, and its skew from params.technician_utc when that is a time.
    # shellcheck disable=SC2016
    DG_HOST_UTC=$(date -u "$DG_TIME") DG_HOST_EPOCH=$(date -u +%s) DG_TECHNICIAN=$DG_TECHNICIAN_UTC dg_awk '
        function days(y, m, d) { if (m <= 2) { y--; m += 12 } return 365 * y + int(y / 4) - int(y / 100) + int(y / 400) + int((153 * (m - 3) + 2) / 5) + d }
        BEGIN {
            t = ENVIRON["DG_TECHNICIAN"]; tech = "null"; skew = "null"
            if (t ~ /^[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]Z$/) {
                epoch = (days(substr(t, 1, 4) + 0, substr(t, 6, 2) + 0, substr(t, 9, 2) + 0) - days(1970, 1, 1)) * 86400 \
                    + substr(t, 12, 2) * 3600 + substr(t, 15, 2) * 60 + substr(t, 18, 2)
                tech = esc(t); skew = sprintf("%.1f", ENVIRON["DG_HOST_EPOCH"] - epoch)
            }
            printf "{\"host_utc\":%s,\"technician_utc\":%s,\"skew_s\":%s}", esc(ENVIRON["DG_HOST_UTC"]), tech, skew
        }' </dev/null
}

dg_journal() {
    # PRIORITY-OR-KERNEL SINCE: journal lines (short format), nothing without journalctl.
    command -v journalctl >/dev/null 2>&1 || return 0
    if [ "$1" = kernel ]; then
        journalctl -q --no-pager -k -o short --since="$2" 2>/dev/null
    else
        journalctl -q --no-pager -p "$1" -o short --since="$2" 2>/dev/null
    fi
}

dg_events() {
    if command -v journalctl >/dev/null 2>&1; then dg_log='"journalctl"'; else dg_log=null; fi
    DG_HOURS=$DG_CRITICAL_HOURS DG_DAYS=$DG_DISK_DAYS
    export DG_HOURS DG_DAYS
    # shellcheck disable=SC2016
    DG_CRITICAL=$(dg_journal crit "-${DG_CRITICAL_HOURS}h" | DG_LOG=$dg_log dg_awk '/^-- / { next } NF >= 5 {
            n++; s = $5; sub(/\[.*$/, "", s); sub(/:$/, "", s); if (!(s in S)) { S[s] = 1; sources = sources (ns++ ? "," : "") esc(s) } }
        END { printf "{\"hours\":%d,\"count\":%d,\"sources\":[%s],\"log\":%s}", ENVIRON["DG_HOURS"], n, sources, ENVIRON["DG_LOG"] }')
    # shellcheck disable=SC2016
    DG_DISK=$(dg_journal kernel "-$((DG_DISK_DAYS * 24))h" | grep -E "$DG_DISK_ERRORS" | DG_LOG=$dg_log dg_awk 'NF >= 5 {
            n++; if (n <= 10) { m = $5; for (i = 6; i <= NF; i++) m = m " " $i
            events = events (n > 1 ? "," : "") "{\"provider\":\"kernel\",\"id\":null,\"time\":" esc($1 " " $2 " " $3) ",\"message\":" esc(m) "}" } }
        END { printf "{\"days\":%d,\"count\":%d,\"events\":[%s],\"log\":%s}", ENVIRON["DG_DAYS"], n, events, ENVIRON["DG_LOG"] }')
}

dg_read() {
    dg_uptime
    dg_events
    dg_computer=$(uname -n)
    if [ -r /etc/os-release ]; then
        # shellcheck disable=SC2016
        dg_os=$(awk -F= '$1 == "PRETTY_NAME" { v = $2; gsub(/^"|"$/, "", v); print v }' /etc/os-release)
    else
        dg_os="$(uname -s) $(uname -r)"
    fi
    DG_STATE="{\"computer\":$(l1fix_json_string "$dg_computer"),\"os\":$(l1fix_json_string "$dg_os")"
    DG_STATE="$DG_STATE,\"last_boot\":$DG_LAST_BOOT,\"uptime_s\":$DG_UPTIME,\"sessions\":$(dg_sessions)"
    DG_STATE="$DG_STATE,\"volumes\":$(dg_volumes),\"services_not_running\":$(dg_services)"
    DG_STATE="$DG_STATE,\"pending_reboot\":$(dg_pending_reboot),\"network\":$(dg_network),\"clock\":$(dg_clock)"
    DG_STATE="$DG_STATE,\"critical_events\":$DG_CRITICAL,\"disk_events\":$DG_DISK}"
    l1fix_observation true "$DG_STATE" "Health of $dg_computer read"
}

l1fix_prepare() {
    l1fix_param network-probe true
    case $L1FIX_PARAM in
        true | false) DG_PROBE=$L1FIX_PARAM ;;
        *) l1fix_fail 'parameter network-probe must be true or false' ;;
    esac
    l1fix_param technician_utc ''
    DG_TECHNICIAN_UTC=$L1FIX_PARAM
}

l1fix_check() {
    dg_read
}

l1fix_fix() {
    l1fix_fail 'diagnose only reads: it has no fix step.'
}

l1fix_verify() {
    l1fix_fail 'diagnose only reads: it has no verify step.'
}

l1fix_run_steps
