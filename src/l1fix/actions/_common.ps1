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
