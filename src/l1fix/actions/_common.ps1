<#
    l1fix shared library - Windows PowerShell 5.1. Not a fix: no action runs it on its own.

    Sent on stdin ahead of every l1fix script (see l1fix/targets/powershell.py) and dot-sourced
    at the top level of powershell.exe, so what it defines is visible to the script, which then
    runs in a child scope and inherits the settings below.
    Definitions only: settings, constants and functions. No param block, no output, and nothing
    here reads the request: the script passes what a function needs.
#>

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$WarningPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 can serialise arrays as {"value":[...],"Count":n} because of the
# extended type data of System.Array; without it ConvertTo-Json writes plain JSON arrays.
Remove-TypeData -TypeName System.Array -ErrorAction SilentlyContinue
Add-Type -AssemblyName System.ServiceProcess

# --------------------------------------------------------------------------- the script's frame

function Invoke-L1fixSteps {
    # The frame of every fix script: decode -EncodedRequest (the script's $Request: base64 of
    # UTF-8 JSON {action, steps, params, before}), run the steps it asks for in its order, stop
    # after a check that finds nothing wrong, and write exactly one JSON document: a key per
    # step run, or {"error": "..."} and exit code 1 when anything throws.
    # -Prepare receives the request and returns the script's settings (it reads and checks
    # the params); -Check, -Fix and -Verify each receive those settings as their argument.
    # PowerShell scopes are dynamic: the blocks, and what they call, run inside this function.
    # Give them their values through the settings. The script's top-level constants still
    # resolve, unless named like a parameter here or like this function's $l1fix* variables.
    param(
        [Parameter(Mandatory = $true)][string]$EncodedRequest,
        [Parameter(Mandatory = $true)][scriptblock]$Prepare,
        [Parameter(Mandatory = $true)][scriptblock]$Check,
        [Parameter(Mandatory = $true)][scriptblock]$Fix,
        [Parameter(Mandatory = $true)][scriptblock]$Verify
    )
    try {
        $l1fixRequest = ConvertFrom-Json -InputObject ([System.Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($EncodedRequest)))
        $l1fixSettings = & $Prepare $l1fixRequest
        $l1fixResult = [ordered]@{}
        foreach ($l1fixStep in @($l1fixRequest.steps)) {
            if ($l1fixStep -eq 'check') {
                $l1fixResult['check'] = & $Check $l1fixSettings
                if ($l1fixResult['check'].ok) {
                    break  # nothing wrong: no fix, no verify
                }
            }
            elseif ($l1fixStep -eq 'fix') {
                $l1fixResult['fix'] = & $Fix $l1fixSettings
            }
            elseif ($l1fixStep -eq 'verify') {
                $l1fixResult['verify'] = & $Verify $l1fixSettings
            }
            else {
                throw "Unknown step '$l1fixStep' (expected check, fix or verify)."
            }
        }
        Write-Output (ConvertTo-Json -InputObject $l1fixResult -Compress -Depth 8)
    }
    catch {
        Write-Output (ConvertTo-Json -InputObject ([ordered]@{ error = $_.Exception.Message }) -Compress)
        exit 1
    }
}

function Get-Param {
    # An optional parameter from the request, or its default when absent or null.
    param($Request, [string]$Name, $Default)
    if ($null -eq $Request.params) {
        return $Default
    }
    $property = $Request.params.PSObject.Properties[$Name]
    if ($null -eq $property -or $null -eq $property.Value) {
        return $Default
    }
    return $property.Value
}

function Get-RequiredParam {
    # A parameter the script cannot run without, as a string; an error naming it when absent or empty.
    param($Request, [string]$Name, [string]$What)
    $value = [string](Get-Param -Request $Request -Name $Name -Default '')
    if ($value -eq '') {
        throw "The parameter '$Name' ($What) is missing."
    }
    return $value
}

function Format-Count {
    param([int]$Count, [string]$Noun)
    if ($Count -eq 1) {
        return "1 $Noun"
    }
    return "$Count ${Noun}s"
}

# --------------------------------------------------------------------------- services

function Get-ServiceByName {
    # Exact, case-insensitive match on the service name, or $null: Get-Service -Name would treat
    # [ ] * ? as wildcards, and the ServiceController constructor also accepts display names.
    param([string]$Name)
    $found = @([System.ServiceProcess.ServiceController]::GetServices() |
        Where-Object { $_.ServiceName -eq $Name })
    if ($found.Count -eq 0) {
        return $null
    }
    return $found[0]
}

function Get-ServiceState {
    param($Service)
    $Service.Refresh()
    $dependents = @($Service.DependentServices | ForEach-Object {
            $_.Refresh()
            [ordered]@{ name = $_.ServiceName; status = [string]$_.Status }
        })
    # Enums become numbers in ConvertTo-Json: turn them into their names.
    return [ordered]@{
        service            = $Service.ServiceName
        display_name       = $Service.DisplayName
        status             = [string]$Service.Status
        start_type         = [string]$Service.StartType
        dependents         = $dependents
        dependents_running = @($dependents | Where-Object { $_.status -eq 'Running' } | ForEach-Object { $_.name })
    }
}

function Wait-ServiceStatus {
    param($Service, [string]$Status, [TimeSpan]$Timeout)
    try {
        $Service.WaitForStatus($Status, $Timeout)
    }
    catch {
        throw "Service '$($Service.ServiceName)' did not reach $Status within $([int]$Timeout.TotalSeconds) s."
    }
}

function Stop-ServiceTree {
    # Stop-Service -Force does the same but waits without a time limit. DependentServices
    # lists direct and indirect dependents in the order they must be stopped.
    param($Service, [TimeSpan]$Timeout)
    foreach ($dependent in @($Service.DependentServices)) {
        $dependent.Refresh()
        if ($dependent.Status -ne 'Stopped') {
            if ($dependent.Status -ne 'StopPending') {
                $dependent.Stop()
            }
            Wait-ServiceStatus -Service $dependent -Status 'Stopped' -Timeout $Timeout
        }
    }
    $Service.Refresh()
    if ($Service.Status -ne 'Stopped') {
        if ($Service.Status -ne 'StopPending') {
            $Service.Stop()
        }
        Wait-ServiceStatus -Service $Service -Status 'Stopped' -Timeout $Timeout
    }
}

function Start-ServiceAndWait {
    # Start and wait until Running; returns $null, or why it is not running. A service that
    # fails during start-up falls back to Stopped: stop waiting then, not at the timeout.
    param($Service, [TimeSpan]$Timeout)
    try {
        $Service.Refresh()
        if ($Service.Status -eq 'Running') {
            return $null
        }
        if ($Service.Status -ne 'StartPending') {
            $Service.Start()
        }
        $deadline = [DateTime]::UtcNow + $Timeout
        do {
            Start-Sleep -Milliseconds 250
            $Service.Refresh()
        } while ($Service.Status -eq 'StartPending' -and [DateTime]::UtcNow -lt $deadline)
        if ($Service.Status -eq 'Running') {
            return $null
        }
        return "it is $($Service.Status) after the start request"
    }
    catch {
        # "Cannot start service X on computer '.'" wraps the Win32 reason: report the reason.
        $reason = $_.Exception
        while ($null -ne $reason.InnerException) {
            $reason = $reason.InnerException
        }
        return $reason.Message
    }
}

function Start-Dependents {
    # Once their service runs again: start the dependents that were running before
    # Stop-ServiceTree, given in the order DependentServices listed them (stop order), so they
    # start in the reverse order. Returns [ordered]@{ restarted = names; not_restarted = names }.
    param([object[]]$Dependents, [TimeSpan]$Timeout)
    $outcome = [ordered]@{ restarted = @(); not_restarted = @() }
    $inStartOrder = @($Dependents | Where-Object { $null -ne $_ })
    [array]::Reverse($inStartOrder)
    foreach ($dependent in $inStartOrder) {
        if ($null -eq (Start-ServiceAndWait -Service $dependent -Timeout $Timeout)) {
            $outcome.restarted += $dependent.ServiceName
        }
        else {
            $outcome.not_restarted += $dependent.ServiceName
        }
    }
    return $outcome
}

# --------------------------------------------------------------------------- native commands

function ConvertTo-NativeArgument {
    # One argument for a Windows command line, quoted by the rules CommandLineToArgvW and the C
    # runtime read it back with: Windows PowerShell 5.1 does not escape embedded quotes itself.
    param([string]$Value)
    if ($Value -ne '' -and $Value -notmatch '[\s"]') {
        return $Value
    }
    $escaped = $Value -replace '(\\*)"', '$1$1\"'
    $escaped = $escaped -replace '(\\+)$', '$1$1'
    return '"' + $escaped + '"'
}

function Invoke-Native {
    # Run a program with each argument as data (never through a shell), for at most TimeoutS
    # seconds (then it is killed); [ordered]@{ exit_code ($null if killed); timed_out; output }
    # with stdout and stderr joined. Stdin is closed: a prompt ("restart now? (Y/N)") reads its end.
    param([string]$FilePath, [string[]]$Arguments, [int]$TimeoutS = 120)
    $info = New-Object System.Diagnostics.ProcessStartInfo
    $info.FileName = $FilePath
    $info.Arguments = (@($Arguments | ForEach-Object { ConvertTo-NativeArgument -Value $_ }) -join ' ')
    $info.UseShellExecute = $false
    $info.CreateNoWindow = $true
    $info.RedirectStandardInput = $true
    $info.RedirectStandardOutput = $true
    $info.RedirectStandardError = $true
    $process = [System.Diagnostics.Process]::Start($info)
    $process.StandardInput.Close()
    $stdout = $process.StandardOutput.ReadToEndAsync()
    $stderr = $process.StandardError.ReadToEndAsync()
    $outcome = [ordered]@{ exit_code = $null; timed_out = $false; output = '' }
    if ($process.WaitForExit($TimeoutS * 1000)) {
        $process.WaitForExit()  # the overload without a timeout also waits for the output to end
        $outcome.exit_code = $process.ExitCode
    }
    else {
        $process.Kill()
        $outcome.timed_out = $true
    }
    $text = (([string]$stdout.Result) + ([string]$stderr.Result)) -replace '\s+', ' '
    $outcome.output = $text.Trim()
    return $outcome
}

# --------------------------------------------------------------------------- logged-on users

# One-shot tasks run as a logged-on user live in this Task Scheduler folder.
$L1fixTaskPath = '\l1fix\'
# Task Scheduler results that mean "not finished yet": SCHED_S_TASK_RUNNING, SCHED_S_TASK_HAS_NOT_RUN.
$L1fixTaskNotDone = @(267009, 267011)

function Get-LoggedOnUsers {
    # Users with an interactive session (console or RDP): the owners of explorer.exe.
    $users = [ordered]@{}
    foreach ($process in @(Get-CimInstance -ClassName Win32_Process -Filter "Name = 'explorer.exe'")) {
        $owner = Invoke-CimMethod -InputObject $process -MethodName GetOwner
        if ($owner.ReturnValue -eq 0) {
            $login = "$($owner.Domain)\$($owner.User)"
            if (-not $users.Contains($login)) {
                $users[$login] = [ordered]@{ login = $login; session_id = [int]$process.SessionId }
            }
        }
    }
    return @($users.Values)
}

function Find-Session {
    # The session of a logged-on user, by DOMAIN\user or by user name alone; an error otherwise.
    # -Why ends the error sentence: why the fix needs the user's session, and what else to do.
    param([string]$Login, [object[]]$Sessions, [string]$Why)
    if ($Login.Contains('\')) {
        $found = @($Sessions | Where-Object { $_.login -eq $Login })
    }
    else {
        $found = @($Sessions | Where-Object { ($_.login -split '\\', 2)[1] -eq $Login })
    }
    $names = @($Sessions | ForEach-Object { $_.login })
    $list = 'nobody'
    if ($names.Count -gt 0) {
        $list = $names -join ', '
    }
    if ($found.Count -eq 0) {
        throw "User '$Login' is not logged on to this computer (logged on: $list): $Why"
    }
    if ($found.Count -gt 1) {
        throw "User '$Login' matches several logged-on users ($list): give it as DOMAIN\user."
    }
    return $found[0]
}

function Get-UserSid {
    # DOMAIN\user -> S-1-5-21-...
    param([string]$Login)
    $parts = $Login -split '\\', 2
    $account = New-Object System.Security.Principal.NTAccount -ArgumentList $parts[0], $parts[1]
    return $account.Translate([System.Security.Principal.SecurityIdentifier]).Value
}

function Invoke-AsLoggedOnUser {
    # Run a program AS a logged-on user, in their session: a one-shot scheduled task (principal =
    # the user, logon type Interactive, least privilege), removed afterwards. WinRM runs as the
    # technician: run here directly, the program would act on the technician's profile.
    # Returns [ordered]@{ task; exit_code (the program's, $null if it did not finish); timed_out }.
    param([string]$Login, [string]$Prefix, [string]$Execute, [string]$Argument, [int]$TimeoutS)
    $taskName = "$Prefix-" + [guid]::NewGuid().ToString('N')
    $outcome = [ordered]@{ task = "$L1fixTaskPath$taskName"; exit_code = $null; timed_out = $false }
    $action = New-ScheduledTaskAction -Execute $Execute -Argument $Argument
    $principal = New-ScheduledTaskPrincipal -UserId $Login -LogonType Interactive -RunLevel Limited
    $taskSettings = New-ScheduledTaskSettingsSet -AllowStartIfOnBatteries -DontStopIfGoingOnBatteries -ExecutionTimeLimit ([TimeSpan]::FromSeconds($TimeoutS + 30))
    Register-ScheduledTask -TaskName $taskName -TaskPath $L1fixTaskPath -Action $action -Principal $principal -Settings $taskSettings | Out-Null
    try {
        Start-ScheduledTask -TaskName $taskName -TaskPath $L1fixTaskPath
        $deadline = [DateTime]::UtcNow.AddSeconds($TimeoutS + 15)
        do {
            Start-Sleep -Seconds 1
            $task = Get-ScheduledTask -TaskName $taskName -TaskPath $L1fixTaskPath
            $info = Get-ScheduledTaskInfo -InputObject $task
            $done = ([string]$task.State -ne 'Running') -and ($L1fixTaskNotDone -notcontains [int64]$info.LastTaskResult)
        } while (-not $done -and [DateTime]::UtcNow -lt $deadline)
        if ($done) {
            $outcome.exit_code = [int64]$info.LastTaskResult  # a uint32 HRESULT may not fit an int
        }
        else {
            Stop-ScheduledTask -TaskName $taskName -TaskPath $L1fixTaskPath -ErrorAction SilentlyContinue
            $outcome.timed_out = $true
        }
    }
    finally {
        Unregister-ScheduledTask -TaskName $taskName -TaskPath $L1fixTaskPath -Confirm:$false -ErrorAction SilentlyContinue
    }
    return $outcome
}
