<#
    l1fix gpupdate - Windows PowerShell 5.1.

    check  : when Group Policy last finished a refresh: the end time the Group Policy service
             writes for its core extension, registry
             HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Group Policy\State\<Machine|SID>\
             Extension-List\{00000000-0000-0000-0000-000000000000} EndTimeLo/EndTimeHi (a FILETIME).
             With params.user: that user must have an interactive session (explorer.exe running
             as them, console or RDP), else an error; their SID and last refresh too.
             A refresh is asked for on purpose: check is never ok.
    fix    : gpupdate /target:computer /force, bounded (/wait and a kill after the timeout); its
             standard input is closed, so a "log off / restart? (Y/N)" prompt is answered no.
             With params.user: gpupdate /target:user /force in the user's session, AS the user,
             through a one-shot scheduled task (principal = the user, logon type Interactive),
             removed afterwards. WinRM runs as the technician: a gpupdate run here would refresh
             the technician's policy, not the user's.
    verify : ok = every refresh asked for exited with code 0 and its end time moved forward.

    Input : -Request = base64 of UTF-8 JSON {action, steps, params, before}.
            Optional params: user (user or DOMAIN\user), timeout_s (default 120, per refresh).
    Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.
    The login is data only: it is compared with the logged-on users and handed to the task
    scheduler as a principal, never made part of code or of a command line.

    From _common.ps1 (sent ahead of this script, which also sets $ErrorActionPreference = 'Stop'):
    Invoke-L1fixSteps (decodes the input, runs the steps, writes the JSON), Get-Param,
    Get-LoggedOnUsers, Find-Session, Get-UserSid, Invoke-AsLoggedOnUser, Invoke-Native.
#>
param([Parameter(Mandatory = $true)][string]$Request)

$GpStateKey = 'HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Group Policy\State'
$CoreExtension = '{00000000-0000-0000-0000-000000000000}'
$TimeFormat = "yyyy-MM-dd'T'HH:mm:ss'Z'"
$SessionNeeded = "a user policy refresh runs in the user's own session. Ask the user to log on, or refresh the computer policy only (without --user)."

function Get-LastRefresh {
    # End time of the last Group Policy refresh of a scope ('Machine' or a user's SID), as UTC
    # text, or $null when it never ran. EndTimeLo is a DWORD that PowerShell reads as a signed int.
    param([string]$Scope)
    $key = "$GpStateKey\$Scope\Extension-List\$CoreExtension"
    $lo = [Microsoft.Win32.Registry]::GetValue($key, 'EndTimeLo', $null)
    $hi = [Microsoft.Win32.Registry]::GetValue($key, 'EndTimeHi', $null)
    if ($null -eq $lo -or $null -eq $hi) {
        return $null
    }
    $low = [int64][BitConverter]::ToUInt32([BitConverter]::GetBytes([int32]$lo), 0)
    $fileTime = ([int64]$hi * 4294967296) + $low
    if ($fileTime -le 0) {
        return $null
    }
    return [DateTime]::FromFileTimeUtc($fileTime).ToString($TimeFormat, [Globalization.CultureInfo]::InvariantCulture)
}

function Get-GpState {
    param($Settings)
    $sessions = @(Get-LoggedOnUsers)
    $state = [ordered]@{
        scope                 = 'computer'
        user                  = $null
        user_sid              = $null
        session_id            = $null
        logged_on_users       = @($sessions | ForEach-Object { $_.login })
        computer_last_refresh = Get-LastRefresh -Scope 'Machine'
        user_last_refresh     = $null
    }
    if ($Settings.User -ne '') {
        $session = Find-Session -Login $Settings.User -Sessions $sessions -Why $SessionNeeded
        $state.scope = 'computer and user'
        $state.user = $session.login
        $state.session_id = $session.session_id
        $state.user_sid = Get-UserSid -Login $session.login
        $state.user_last_refresh = Get-LastRefresh -Scope $state.user_sid
    }
    return $state
}

function Format-Refresh {
    param($Time)
    if ($null -eq $Time) {
        return 'never'
    }
    return $Time
}

function Get-CheckObservation {
    param($State)
    $summary = "Computer policy last refreshed: $(Format-Refresh $State.computer_last_refresh)"
    if ($null -ne $State.user) {
        $summary += "; $($State.user)'s user policy (session $($State.session_id)): $(Format-Refresh $State.user_last_refresh)"
    }
    return [ordered]@{ ok = $false; state = $State; summary = "$summary." }
}

function Invoke-GpUpdateExe {
    # gpupdate.exe for the computer, bounded; returns its exit code ($null if killed) and output.
    param([int]$TimeoutS)
    $exe = Join-Path $env:SystemRoot 'System32\gpupdate.exe'
    return Invoke-Native -FilePath $exe -Arguments @('/target:computer', '/force', "/wait:$TimeoutS") -TimeoutS ($TimeoutS + 15)
}

function Invoke-UserGpUpdate {
    # gpupdate /target:user AS the user, in their session, through a one-shot scheduled task.
    param([string]$Login, [int]$TimeoutS)
    return Invoke-AsLoggedOnUser -Login $Login -Prefix 'gpupdate' -TimeoutS $TimeoutS -Execute (Join-Path $env:SystemRoot 'System32\gpupdate.exe') -Argument "/target:user /force /wait:$TimeoutS"
}

function Format-Outcome {
    param([string]$What, $Outcome, [int]$TimeoutS)
    if ($Outcome.timed_out) {
        return "$What did not finish within $TimeoutS s"
    }
    if ($Outcome.exit_code -eq 0) {
        return "$What completed"
    }
    return "$What failed (gpupdate exit code $($Outcome.exit_code))"
}

function Invoke-GpFix {
    param($Settings)
    $state = Get-GpState -Settings $Settings
    $computer = Invoke-GpUpdateExe -TimeoutS $Settings.TimeoutS
    $Settings.ComputerExitCode = $computer.exit_code
    $fix = [ordered]@{
        summary            = ''
        computer_exit_code = $computer.exit_code
        computer_timed_out = $computer.timed_out
        computer_output    = $computer.output
        user               = $state.user
        user_task          = $null
        user_exit_code     = $null
        user_timed_out     = $false
    }
    $summary = Format-Outcome -What 'Computer policy refresh' -Outcome $computer -TimeoutS $Settings.TimeoutS
    if ($null -ne $state.user) {
        $user = Invoke-UserGpUpdate -Login $state.user -TimeoutS $Settings.TimeoutS
        $Settings.UserExitCode = $user.exit_code
        $fix.user_task = $user.task
        $fix.user_exit_code = $user.exit_code
        $fix.user_timed_out = $user.timed_out
        $summary += '; ' + (Format-Outcome -What "$($state.user)'s user policy refresh (as the user, in session $($state.session_id))" -Outcome $user -TimeoutS $Settings.TimeoutS)
    }
    $fix.summary = "$summary."
    return $fix
}

function Test-MovedForward {
    param($Before, $After)
    return ($null -ne $After) -and (($null -eq $Before) -or ([string]::CompareOrdinal([string]$After, [string]$Before) -gt 0))
}

function Get-VerifyObservation {
    param($State, $Settings)
    $computerOk = (Test-MovedForward -Before $Settings.ComputerBefore -After $State.computer_last_refresh) -and
        (($null -eq $Settings.ComputerExitCode -and -not $Settings.FixRan) -or $Settings.ComputerExitCode -eq 0)
    $State['computer_refreshed'] = $computerOk
    $State['user_refreshed'] = $null
    $ok = $computerOk
    $parts = @()
    if ($computerOk) {
        $parts += "computer policy refreshed at $($State.computer_last_refresh)"
    }
    else {
        $parts += "computer policy not refreshed (last: $(Format-Refresh $State.computer_last_refresh), gpupdate exit code $($Settings.ComputerExitCode))"
    }
    if ($null -ne $State.user) {
        $userOk = (Test-MovedForward -Before $Settings.UserBefore -After $State.user_last_refresh) -and
            (($null -eq $Settings.UserExitCode -and -not $Settings.FixRan) -or $Settings.UserExitCode -eq 0)
        $State['user_refreshed'] = $userOk
        $ok = $ok -and $userOk
        if ($userOk) {
            $parts += "$($State.user)'s user policy refreshed at $($State.user_last_refresh)"
        }
        else {
            $parts += "$($State.user)'s user policy not refreshed (last: $(Format-Refresh $State.user_last_refresh), exit code $($Settings.UserExitCode))"
        }
    }
    $summary = 'Group Policy: ' + ($parts -join '; ') + '.'
    return [ordered]@{ ok = $ok; state = $State; summary = $summary }
}

Invoke-L1fixSteps -EncodedRequest $Request -Prepare {
    param($Request)
    $computerBefore = $null
    $userBefore = $null
    if ($null -ne $Request.before) {
        $computerBefore = $Request.before.computer_last_refresh
        $userBefore = $Request.before.user_last_refresh
    }
    # A hashtable: the check and the fix of this run record here what the verify compares with.
    @{
        User             = [string](Get-Param -Request $Request -Name 'user' -Default '')
        TimeoutS         = [int](Get-Param -Request $Request -Name 'timeout_s' -Default 120)
        ComputerBefore   = $computerBefore
        UserBefore       = $userBefore
        ComputerExitCode = $null
        UserExitCode     = $null
        FixRan           = $false
    }
} -Check {
    param($Settings)
    $state = Get-GpState -Settings $Settings
    $Settings.ComputerBefore = $state.computer_last_refresh
    $Settings.UserBefore = $state.user_last_refresh
    Get-CheckObservation -State $state
} -Fix {
    param($Settings)
    $Settings.FixRan = $true
    Invoke-GpFix -Settings $Settings
} -Verify {
    param($Settings)
    Get-VerifyObservation -State (Get-GpState -Settings $Settings) -Settings $Settings
}
