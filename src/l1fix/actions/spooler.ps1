<#
    l1fix spooler-restart - Windows PowerShell 5.1.

    check  : Print Spooler status and start type, its dependents, the print jobs of every local
             printer and the spool folder (registry DefaultSpoolDirectory) with its .SPL/.SHD files.
             ok = Spooler Running, no stuck job, no orphan spool file.
    fix    : a Disabled Spooler is reported, never re-enabled (escalate). Otherwise stop the
             Spooler with its dependents, delete the spool files (= purge the jobs), start the
             Spooler and the dependents that were running, each wait bounded.
    verify : ok = Spooler Running and its queue empty.

    Input : -Request = base64 of UTF-8 JSON {action, steps, params, before}.
            Optional params: stuck_minutes (default 30; 0 = do not judge jobs by age),
            timeout_s (default 60).
    Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.
    Values from the input are data only: nothing here builds code or a command from them.

    From _common.ps1 (sent ahead of this script, which also sets $ErrorActionPreference = 'Stop'):
    Invoke-L1fixSteps (decodes the input, runs the steps, writes the JSON), Get-Param,
    Format-Count, Get-ServiceByName, Get-ServiceState, Stop-ServiceTree, Start-ServiceAndWait,
    Start-Dependents.
#>
param([Parameter(Mandatory = $true)][string]$Request)

$SpoolerName = 'Spooler'
$SpoolRegistryKey = 'HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\Print\Printers'
# Win32_PrintJob.StatusMask bits (JOB_STATUS_* in winspool.h), in bit order.
$JobStatusBits = [ordered]@{
    Paused           = 0x1
    Error            = 0x2
    Deleting         = 0x4
    Spooling         = 0x8
    Printing         = 0x10
    Offline          = 0x20
    PaperOut         = 0x40
    Printed          = 0x80
    Deleted          = 0x100
    Blocked          = 0x200
    UserIntervention = 0x400
    Restart          = 0x800
}
$StuckStatuses = @('Paused', 'Error', 'Deleting', 'Blocked')

function Get-SpoolFolder {
    # The Spooler reads its folder from the registry; it may have been moved off C:.
    # (A printer may also have its own SpoolDirectory value; l1fix purges the default folder.)
    $folder = [Microsoft.Win32.Registry]::GetValue($SpoolRegistryKey, 'DefaultSpoolDirectory', $null)
    if ([string]::IsNullOrWhiteSpace([string]$folder)) {
        $folder = Join-Path $env:SystemRoot 'System32\spool\PRINTERS'
    }
    return [Environment]::ExpandEnvironmentVariables([string]$folder)
}

function Get-SpoolFiles {
    param([string]$Folder)
    if (Test-Path -LiteralPath $Folder -PathType Container) {
        Get-ChildItem -LiteralPath $Folder -File -Force |
            Where-Object { $_.Extension -eq '.SPL' -or $_.Extension -eq '.SHD' }
    }
}

function Get-PrintJobs {
    # Every job of every local printer. Only a running Spooler answers this query.
    param([int]$StuckMinutes)
    $now = Get-Date
    foreach ($job in @(Get-CimInstance -ClassName Win32_PrintJob)) {
        $mask = [int]$job.StatusMask
        $flags = @($JobStatusBits.Keys | Where-Object { $mask -band $JobStatusBits[$_] })
        $status = 'Queued'
        if ($flags.Count -gt 0) {
            $status = $flags -join ', '
        }
        $age = 0
        if ($null -ne $job.TimeSubmitted) {
            $age = [int][Math]::Floor(($now - $job.TimeSubmitted).TotalMinutes)
        }
        $stuckByStatus = @($flags | Where-Object { $StuckStatuses -contains $_ }).Count -gt 0
        $stuckByAge = ($StuckMinutes -gt 0) -and ($age -ge $StuckMinutes)
        [ordered]@{
            id          = [int]$job.JobId
            printer     = ([string]$job.Name) -replace ',\s*\d+$', ''  # Name is "<printer>, <job id>"
            document    = [string]$job.Document
            owner       = [string]$job.Owner
            status      = $status
            age_minutes = $age
            stuck       = ($stuckByStatus -or $stuckByAge)
        }
    }
}

function Get-SpoolerState {
    param([int]$StuckMinutes)
    $service = Get-ServiceByName -Name $SpoolerName
    if ($null -eq $service) {
        throw 'The Print Spooler service (Spooler) is not installed on this computer.'
    }
    $state = Get-ServiceState -Service $service
    $jobs = @()
    if ($state.status -eq 'Running') {
        $jobs = @(Get-PrintJobs -StuckMinutes $StuckMinutes)
    }
    $folder = Get-SpoolFolder
    $files = @(Get-SpoolFiles -Folder $folder)
    # Job N spools to 000N.SPL/.SHD (FP000N.* on older systems). A file of no queued job -
    # every file while the Spooler is down - is an orphan that the queue will never clear.
    $jobIds = @($jobs | ForEach-Object { $_.id })
    $orphans = @($files | Where-Object {
            $match = [regex]::Match($_.BaseName, '(\d+)$')
            (-not $match.Success) -or ($jobIds -notcontains [long]$match.Groups[1].Value)
        })
    $state['jobs'] = $jobs
    $stuckIds = @($jobs | Where-Object { $_.stuck } | ForEach-Object { $_.id })
    $state['stuck_jobs'] = $stuckIds.Count
    $state['stuck_job_ids'] = $stuckIds
    $state['stuck_minutes'] = $StuckMinutes
    $state['spool_folder'] = $folder
    $state['spool_files'] = $files.Count
    $state['orphan_spool_files'] = $orphans.Count
    return $state
}

function Get-CheckObservation {
    param($State)
    $stuck = $State.stuck_jobs
    $orphans = $State.orphan_spool_files
    $ok = ($State.status -eq 'Running') -and ($stuck -eq 0) -and ($orphans -eq 0)
    if ($ok) {
        $summary = "The Print Spooler is running with no stuck print job ($($State.jobs.Count) in the queue)."
    }
    elseif ($State.start_type -eq 'Disabled') {
        $summary = "The Print Spooler is Disabled ($($State.status)); l1fix will not re-enable it: escalate to L2."
    }
    elseif ($State.status -ne 'Running') {
        $summary = "The Print Spooler is $($State.status) with $(Format-Count $State.spool_files 'spool file') in $($State.spool_folder)."
    }
    elseif ($stuck -gt 0) {
        $summary = "The Print Spooler is running but has $(Format-Count $stuck 'stuck print job') ($($State.jobs.Count) in the queue)."
    }
    else {
        $summary = "The Print Spooler is running but its spool folder $($State.spool_folder) holds $(Format-Count $orphans 'orphan spool file')."
    }
    return [ordered]@{ ok = $ok; state = $State; summary = $summary }
}

function Get-VerifyObservation {
    param($State)
    $ok = ($State.status -eq 'Running') -and ($State.jobs.Count -eq 0) -and ($State.orphan_spool_files -eq 0)
    if ($ok) {
        $summary = 'The Print Spooler is running and its queue is empty.'
    }
    elseif ($State.status -ne 'Running') {
        $summary = "The Print Spooler is still not running ($($State.status), start type $($State.start_type))."
    }
    else {
        $summary = "The Print Spooler is running but its queue is not empty ($(Format-Count $State.jobs.Count 'job'), $(Format-Count $State.orphan_spool_files 'orphan spool file'))."
    }
    return [ordered]@{ ok = $ok; state = $State; summary = $summary }
}

function Invoke-SpoolerFix {
    param([TimeSpan]$Timeout)
    $service = Get-ServiceByName -Name $SpoolerName
    if ($null -eq $service) {
        throw 'The Print Spooler service (Spooler) is not installed on this computer.'
    }
    $folder = Get-SpoolFolder
    $fix = [ordered]@{
        summary                  = ''
        disabled                 = $false
        spool_folder             = $folder
        jobs_purged              = 0
        files_deleted            = 0
        files_not_deleted        = 0
        started                  = $false
        start_error              = $null
        dependents_restarted     = @()
        dependents_not_restarted = @()
    }
    if ([string]$service.StartType -eq 'Disabled') {
        # Disabled is a decision (policy, hardening against PrintNightmare...), not a fault.
        $fix.disabled = $true
        $fix.summary = 'The Print Spooler is Disabled: l1fix never re-enables a disabled service, nothing was changed; escalate to L2.'
        return $fix
    }

    # Remember the dependents that run now: they stop with the Spooler and start again after.
    $dependentsRunning = @($service.DependentServices | Where-Object { $_.Status -eq 'Running' })
    $wasRunning = $service.Status -ne 'Stopped'
    Stop-ServiceTree -Service $service -Timeout $Timeout

    # With the Spooler stopped nothing holds the files. Deleting them is what purges the jobs:
    # a starting Spooler would load every job again from its .SHD file.
    $purged = @{}
    foreach ($file in @(Get-SpoolFiles -Folder $folder)) {
        try {
            Remove-Item -LiteralPath $file.FullName -Force
            $fix['files_deleted'] += 1
            $purged[$file.BaseName] = $true
        }
        catch {
            $fix['files_not_deleted'] += 1
        }
    }
    $fix.jobs_purged = $purged.Count

    $fix.start_error = Start-ServiceAndWait -Service $service -Timeout $Timeout
    $fix.started = $null -eq $fix.start_error
    if ($fix.started) {
        $again = Start-Dependents -Dependents $dependentsRunning -Timeout $Timeout
        $fix.dependents_restarted = $again.restarted
        $fix.dependents_not_restarted = $again.not_restarted
    }
    else {
        $fix.dependents_not_restarted = @($dependentsRunning | ForEach-Object { $_.ServiceName })
    }

    $verb = 'Started'
    if ($wasRunning) {
        $verb = 'Restarted'
    }
    $purgedText = "$(Format-Count $fix.jobs_purged 'job') purged ($(Format-Count $fix.files_deleted 'spool file') deleted from $folder)"
    if ($fix.started) {
        $summary = "$verb the Print Spooler; $purgedText."
    }
    else {
        $summary = "Stopped the Print Spooler; $purgedText; but it did not start again: $($fix.start_error)."
    }
    if ($fix.dependents_restarted.Count -gt 0) {
        $summary += " Dependents started again: $($fix.dependents_restarted -join ', ')."
    }
    if ($fix.dependents_not_restarted.Count -gt 0) {
        $summary += " Dependents not running again: $($fix.dependents_not_restarted -join ', ')."
    }
    if ($fix.files_not_deleted -gt 0) {
        $summary += " $(Format-Count $fix.files_not_deleted 'spool file') could not be deleted."
    }
    $fix.summary = $summary
    return $fix
}

Invoke-L1fixSteps -EncodedRequest $Request -Prepare {
    param($Request)
    @{
        StuckMinutes = [int](Get-Param -Request $Request -Name 'stuck_minutes' -Default 30)
        Timeout      = [TimeSpan]::FromSeconds([double](Get-Param -Request $Request -Name 'timeout_s' -Default 60))
    }
} -Check {
    param($Settings)
    Get-CheckObservation -State (Get-SpoolerState -StuckMinutes $Settings.StuckMinutes)
} -Fix {
    param($Settings)
    Invoke-SpoolerFix -Timeout $Settings.Timeout
} -Verify {
    param($Settings)
    Get-VerifyObservation -State (Get-SpoolerState -StuckMinutes $Settings.StuckMinutes)
}
