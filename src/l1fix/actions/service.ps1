<#
    l1fix service-restart - Windows PowerShell 5.1.

    check  : does params.service exist (an error if not), its status, start type and dependents.
             ok = Running.
    fix    : a Disabled service is reported, never re-enabled (verify then fails: escalate).
             Otherwise restart it (or start it when stopped) with its dependents: the
             dependents that were running are started again. Every wait is bounded.
    verify : ok = Running.

    Input : -Request = base64 of UTF-8 JSON {action, steps, params, before}.
            params: service (the service name, not the display name), optional timeout_s (60).
    Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.
    The service name is data only: it is compared, never passed where [ ] * ? are wildcards
    and never made part of code or of a command line.

    From _common.ps1 (sent ahead of this script, which also sets $ErrorActionPreference = 'Stop'):
    Invoke-L1fixSteps (decodes the input, runs the steps, writes the JSON), Get-Param, Get-RequiredParam,
    Get-ServiceByName, Get-ServiceState, Stop-ServiceTree, Start-ServiceAndWait, Start-Dependents.
#>
param([Parameter(Mandatory = $true)][string]$Request)

function Find-Service {
    # The service by its exact name (no wildcards, no display name), or an error.
    param([string]$Name)
    $service = Get-ServiceByName -Name $Name
    if ($null -eq $service) {
        throw "Service '$Name' was not found on this computer (give the service name, e.g. 'Spooler', not the display name)."
    }
    return $service
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
        $again = Start-Dependents -Dependents $dependentsRunning -Timeout $Timeout
        $fix.dependents_restarted = $again.restarted
        $fix.dependents_not_restarted = $again.not_restarted
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

Invoke-L1fixSteps -EncodedRequest $Request -Prepare {
    param($Request)
    $name = Get-RequiredParam -Request $Request -Name 'service' -What 'a service name'
    @{
        Name    = $name
        Timeout = [TimeSpan]::FromSeconds([double](Get-Param -Request $Request -Name 'timeout_s' -Default 60))
    }
} -Check {
    param($Settings)
    Get-Observation -State (Get-ServiceState -Service (Find-Service -Name $Settings.Name)) -Step 'check'
} -Fix {
    param($Settings)
    Invoke-ServiceFix -Name $Settings.Name -Timeout $Settings.Timeout
} -Verify {
    param($Settings)
    Get-Observation -State (Get-ServiceState -Service (Find-Service -Name $Settings.Name)) -Step 'verify'
}
