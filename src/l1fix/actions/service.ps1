<#
    l1fix service-restart - Windows PowerShell 5.1.

    check  : does params.service exist (an error if not), its status, start type and dependents.
             ok = Running.
    fix    : a Disabled service is reported, never re-enabled (verify then fails: escalate).
             Otherwise restart it (or start it when stopped) with its dependents: the
             dependents that were running are started again. Every wait is bounded.
    verify : ok = Running.

    Input : -InputB64 = base64 of UTF-8 JSON {action, steps, params, before}.
            params: service (the service name, not the display name), optional timeout_s (60).
    Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.
    The service name is data only: it is compared, never passed where [ ] * ? are wildcards
    and never made part of code or of a command line.
#>
param([Parameter(Mandatory = $true)][string]$InputB64)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
$WarningPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 can serialise arrays as {"value":[...],"Count":n} because of the
# extended type data of System.Array; without it ConvertTo-Json writes plain JSON arrays.
Remove-TypeData -TypeName System.Array -ErrorAction SilentlyContinue
Add-Type -AssemblyName System.ServiceProcess

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

function Find-Service {
    # Exact, case-insensitive match on the service name: Get-Service -Name would treat
    # [ ] * ? as wildcards, and the ServiceController constructor also accepts display names.
    param([string]$Name)
    $found = @([System.ServiceProcess.ServiceController]::GetServices() |
        Where-Object { $_.ServiceName -eq $Name })
    if ($found.Count -eq 0) {
        throw "Service '$Name' was not found on this computer (give the service name, e.g. 'Spooler', not the display name)."
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

function Get-Observation {
    param($State, [string]$Step)
    $ok = $State.status -eq 'Running'
    $label = "Service '$($State.service)' ($($State.display_name))"
    if ($ok) {
        $summary = "$label is running."
    }
    elseif ($State.start_type -eq 'Disabled') {
        $summary = "$label is Disabled and $($State.status); l1fix will not re-enable it: escalate to L2."
    }
    elseif ($Step -eq 'verify') {
        $summary = "$label is still not running ($($State.status), start type $($State.start_type))."
    }
    else {
        $summary = "$label is $($State.status) (start type $($State.start_type))."
    }
    return [ordered]@{ ok = $ok; state = $State; summary = $summary }
}

function Invoke-ServiceFix {
    param([string]$Name, [TimeSpan]$Timeout)
    $service = Find-Service -Name $Name
    $fix = [ordered]@{
        summary                  = ''
        service                  = $service.ServiceName
        disabled                 = $false
        action                   = 'none'
        start_error              = $null
        dependents_restarted     = @()
        dependents_not_restarted = @()
        status                   = [string]$service.Status
    }
    if ([string]$service.StartType -eq 'Disabled') {
        # Someone disabled it on purpose (policy, hardening): that is for L2 to undo, not L1.
        $fix.disabled = $true
        $fix.summary = "Service '$($service.ServiceName)' is Disabled: l1fix never re-enables a disabled service, nothing was changed; escalate to L2."
        return $fix
    }

    # Remember the dependents that run now: they stop with the service and start again after.
    $dependentsRunning = @($service.DependentServices | Where-Object { $_.Status -eq 'Running' })
    $fix.action = 'started'
    if ($service.Status -ne 'Stopped') {
        $fix.action = 'restarted'
        Stop-ServiceTree -Service $service -Timeout $Timeout
    }
    $fix.start_error = Start-ServiceAndWait -Service $service -Timeout $Timeout
    if ($null -eq $fix.start_error) {
        # Dependents were listed in stop order: start them in the reverse order.
        [array]::Reverse($dependentsRunning)
        foreach ($dependent in $dependentsRunning) {
            if ($null -eq (Start-ServiceAndWait -Service $dependent -Timeout $Timeout)) {
                $fix.dependents_restarted += $dependent.ServiceName
            }
            else {
                $fix.dependents_not_restarted += $dependent.ServiceName
            }
        }
    }
    else {
        $fix.dependents_not_restarted = @($dependentsRunning | ForEach-Object { $_.ServiceName })
    }
    $service.Refresh()
    $fix.status = [string]$service.Status

    $verb = 'Started'
    if ($fix.action -eq 'restarted') {
        $verb = 'Restarted'
    }
    if ($null -eq $fix.start_error) {
        $summary = "$verb service '$($service.ServiceName)'."
    }
    else {
        $summary = "Tried to start service '$($service.ServiceName)' but it is not running: $($fix.start_error)."
    }
    if ($fix.dependents_restarted.Count -gt 0) {
        $summary += " Dependents started again: $($fix.dependents_restarted -join ', ')."
    }
    if ($fix.dependents_not_restarted.Count -gt 0) {
        $summary += " Dependents not running again: $($fix.dependents_not_restarted -join ', ')."
    }
    $fix.summary = $summary
    return $fix
}

try {
    $request = ConvertFrom-Json -InputObject ([System.Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($InputB64)))
    $name = [string](Get-Param -Request $request -Name 'service' -Default '')
    if ($name -eq '') {
        throw "The parameter 'service' (a service name) is missing."
    }
    $timeout = [TimeSpan]::FromSeconds([double](Get-Param -Request $request -Name 'timeout_s' -Default 60))
    $result = [ordered]@{}
    foreach ($step in @($request.steps)) {
        if ($step -eq 'check') {
            $result['check'] = Get-Observation -State (Get-ServiceState -Service (Find-Service -Name $name)) -Step 'check'
            if ($result['check'].ok) {
                break  # nothing wrong: no fix, no verify
            }
        }
        elseif ($step -eq 'fix') {
            $result['fix'] = Invoke-ServiceFix -Name $name -Timeout $timeout
        }
        elseif ($step -eq 'verify') {
            $result['verify'] = Get-Observation -State (Get-ServiceState -Service (Find-Service -Name $name)) -Step 'verify'
        }
        else {
            throw "Unknown step '$step' (expected check, fix or verify)."
        }
    }
    Write-Output (ConvertTo-Json -InputObject $result -Compress -Depth 8)
}
catch {
    Write-Output (ConvertTo-Json -InputObject ([ordered]@{ error = $_.Exception.Message }) -Compress)
    exit 1
}
