<#
    l1fix reboot - Windows PowerShell 5.1.

    Windows has no API that tells whether a shutdown is pending, nor when. What it does write:
    User32 event 1074 in the System log when a restart or shutdown is initiated (shutdown.exe
    included, at the moment it is scheduled, with its type, user, process and comment), and
    User32 event 1075 when one is aborted (shutdown /a). So here a restart is "scheduled" when
    the latest of those two events since the last boot is a 1074 of type restart. Its time is
    only known to the run that scheduled it: the fix reports it. (Scheduling a probe restart
    and reading error 1190 would tell too, but would itself restart the PC if the abort failed.)

    check  : last boot time and uptime (Win32_OperatingSystem), the logged-on users (owners of
             explorer.exe: console and RDP), and the pending restart or shutdown (event 1074).
             restart: ok = a restart is already scheduled (nothing done; --cancel cancels it).
             cancel : ok = nothing is scheduled.
    fix    : restart: shutdown.exe /r /t <notice-minutes * 60> /c <message> /d p:0:0 (planned,
             "Other"): every logged-on user sees the message and a countdown; never /f with
             /t 0. cancel: shutdown.exe /a. The arguments go through Invoke-Native as data.
             A refusal (5 access denied, 1190 a shutdown already scheduled, 1115 a shutdown in
             progress) is reported with the exit code, nothing else is tried.
    verify : restart: ok = a restart is scheduled with this message. cancel: ok = nothing is.

    Input : -Request = base64 of UTF-8 JSON {action, steps, params, before}.
            params: notice-minutes (1-1440) and message (1-512 characters) for a restart, or
            cancel (boolean).
    Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.

    From _common.ps1: Invoke-L1fixSteps, Get-Param, Format-Count, Invoke-Native, Get-LoggedOnUsers.
#>
param([Parameter(Mandatory = $true)][string]$Request)

$ShutdownExe = Join-Path $env:SystemRoot 'System32\shutdown.exe'
$TimeFormat = "yyyy-MM-dd'T'HH:mm:ss'Z'"
$MaxNoticeMinutes = 1440
$MaxMessage = 512  # shutdown.exe /c

function Format-Time {
    param([DateTime]$Time)
    return $Time.ToUniversalTime().ToString($TimeFormat, [Globalization.CultureInfo]::InvariantCulture)
}

function Get-PendingShutdown {
    # The restart or shutdown initiated since the last boot and not aborted since, or $null.
    param([DateTime]$Boot)
    $filter = @{ LogName = 'System'; ProviderName = 'User32'; Id = @(1074, 1075); StartTime = $Boot }
    try {
        $latest = @(Get-WinEvent -FilterHashtable $filter -MaxEvents 1)
    }
    catch {
        if ($_.FullyQualifiedErrorId -like 'NoMatchingEventsFound*') {
            return $null
        }
        throw
    }
    if ($latest.Count -eq 0 -or $latest[0].Id -ne 1074) {
        return $null
    }
    # 1074: process, computer, reason, reason code, shutdown type, comment, user.
    $values = @($latest[0].Properties | ForEach-Object { [string]$_.Value })
    return [ordered]@{
        type        = $values[4]
        initiated   = Format-Time $latest[0].TimeCreated
        by          = $values[6]
        process     = $values[0]
        comment     = $values[5]
        reason_code = $values[3]
    }
}

function Get-PowerState {
    param($Settings)
    $boot = (Get-CimInstance -ClassName Win32_OperatingSystem).LastBootUpTime
    $pending = Get-PendingShutdown -Boot $boot
    return [ordered]@{
        mode            = $Settings.Mode
        last_boot       = Format-Time $boot
        uptime_hours    = [math]::Round(([DateTime]::UtcNow - $boot.ToUniversalTime()).TotalHours, 1)
        logged_on_users = @(Get-LoggedOnUsers | ForEach-Object { $_.login })
        pending         = $pending
        restart_pending = ($null -ne $pending) -and ($pending.type -eq 'restart')
    }
}

function Format-Pending {
    param($Pending)
    return "a $($Pending.type) initiated at $($Pending.initiated) by $($Pending.by) ($($Pending.process)), comment '$($Pending.comment)'"
}

function Format-Users {
    param([object[]]$Users)
    if (@($Users).Count -eq 0) {
        return 'nobody is logged on'
    }
    return "logged on: $(@($Users) -join ', ')"
}

function Get-CheckObservation {
    param($State, $Settings)
    $uptime = "Up $($State.uptime_hours) h since $($State.last_boot); $(Format-Users $State.logged_on_users)"
    if ($Settings.Mode -eq 'cancel') {
        $ok = $null -eq $State.pending
        if ($ok) {
            $summary = "$uptime; no restart or shutdown is scheduled: nothing to cancel."
        }
        else {
            $summary = "$uptime; scheduled: $(Format-Pending $State.pending)."
        }
    }
    else {
        $ok = $State.restart_pending
        if ($ok) {
            $summary = "$uptime; a restart is already scheduled: $(Format-Pending $State.pending). Nothing done (reboot --cancel cancels it)."
        }
        elseif ($null -ne $State.pending) {
            $summary = "$uptime; already scheduled: $(Format-Pending $State.pending); a restart cannot be scheduled before it is cancelled (reboot --cancel)."
        }
        else {
            $summary = "$uptime; no restart scheduled."
        }
    }
    return [ordered]@{ ok = $ok; state = $State; summary = $summary }
}

function Invoke-RestartFix {
    param($Settings)
    $users = @(Get-LoggedOnUsers | ForEach-Object { $_.login })
    $seconds = $Settings.NoticeMinutes * 60
    $restartAt = [DateTime]::UtcNow.AddSeconds($seconds)
    $run = Invoke-Native -FilePath $ShutdownExe -Arguments @('/r', '/t', [string]$seconds, '/c', $Settings.Message, '/d', 'p:0:0')
    $fix = [ordered]@{
        summary        = ''
        scheduled      = $run.exit_code -eq 0
        exit_code      = $run.exit_code
        error          = $null
        restart_at     = $null
        notice_minutes = $Settings.NoticeMinutes
        notified       = @()
    }
    if ($fix.scheduled) {
        $fix.restart_at = Format-Time $restartAt
        $fix.notified = $users
        $who = 'nobody is logged on to see the notice'
        if ($users.Count -gt 0) {
            $who = "$(Format-Count $users.Count 'logged-on user') ($($users -join ', ')) got the notice '$($Settings.Message)' with a countdown"
        }
        $fix.summary = "Scheduled a planned restart at $($fix.restart_at) (in $(Format-Count $Settings.NoticeMinutes 'minute')); $who."
    }
    else {
        $fix.error = $run.output
        $fix.summary = "shutdown.exe refused the restart (exit code $($run.exit_code): $($run.output)); nothing is scheduled."
    }
    return $fix
}

function Invoke-CancelFix {
    $run = Invoke-Native -FilePath $ShutdownExe -Arguments @('/a')
    $fix = [ordered]@{ summary = ''; cancelled = $run.exit_code -eq 0; exit_code = $run.exit_code; error = $null }
    if ($fix.cancelled) {
        $fix.summary = 'Cancelled the scheduled restart or shutdown (shutdown /a); the logged-on users are told it is off.'
    }
    else {
        $fix.error = $run.output
        $fix.summary = "shutdown.exe /a failed (exit code $($run.exit_code): $($run.output))."
    }
    return $fix
}

function Get-VerifyObservation {
    param($State, $Settings)
    if ($Settings.Mode -eq 'cancel') {
        $ok = $null -eq $State.pending
        if ($ok) {
            $summary = 'No restart or shutdown is scheduled any more.'
        }
        else {
            $summary = "Still scheduled: $(Format-Pending $State.pending)."
        }
        return [ordered]@{ ok = $ok; state = $State; summary = $summary }
    }
    $ok = $State.restart_pending -and ($State.pending.comment -ceq $Settings.Message)
    if ($ok) {
        $summary = "A restart is scheduled (event 1074 at $($State.pending.initiated) by $($State.pending.by)) with the notice given; $(Format-Users $State.logged_on_users)."
    }
    elseif ($null -ne $State.pending) {
        $summary = "No restart with this notice is scheduled; what is: $(Format-Pending $State.pending)."
    }
    else {
        $summary = 'No restart is scheduled.'
    }
    return [ordered]@{ ok = $ok; state = $State; summary = $summary }
}

Invoke-L1fixSteps -EncodedRequest $Request -Prepare {
    param($Request)
    $mode = 'restart'
    if ([bool](Get-Param -Request $Request -Name 'cancel' -Default $false)) {
        $mode = 'cancel'
    }
    $minutes = [int](Get-Param -Request $Request -Name 'notice-minutes' -Default 0)
    $message = [string](Get-Param -Request $Request -Name 'message' -Default '')
    if ($mode -eq 'restart') {
        if ($minutes -lt 1 -or $minutes -gt $MaxNoticeMinutes) {
            throw "The parameter 'notice-minutes' must be 1 to $MaxNoticeMinutes (got $minutes): l1fix never restarts a PC without notice."
        }
        if ($message.Trim() -eq '' -or $message.Length -gt $MaxMessage) {
            throw "The parameter 'message' must be 1 to $MaxMessage characters (got $($message.Length))."
        }
    }
    @{ Mode = $mode; NoticeMinutes = $minutes; Message = $message }
} -Check {
    param($Settings)
    Get-CheckObservation -State (Get-PowerState -Settings $Settings) -Settings $Settings
} -Fix {
    param($Settings)
    if ($Settings.Mode -eq 'cancel') {
        Invoke-CancelFix
    }
    else {
        Invoke-RestartFix -Settings $Settings
    }
} -Verify {
    param($Settings)
    Get-VerifyObservation -State (Get-PowerState -Settings $Settings) -Settings $Settings
}
