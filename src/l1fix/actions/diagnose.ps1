<#
    l1fix diagnose - Windows PowerShell 5.1. Read-only: it changes nothing on the computer.

    check  : the readings l1fix/actions/diagnose.py judges (its suggestions are computed there,
             the same way for every OS; the print queue and the policy age come from
             spooler-restart's and gpupdate's own checks):
             uptime (Win32_OperatingSystem LastBootUpTime); sessions (quser: console and RDP,
             active and disconnected); free space per local disk (Win32_LogicalDisk DriveType 3);
             Automatic services not running (Win32_Service; a delayed or trigger-start one that
             stopped with exit code 0 is normal and left out); pending reboot (CBS RebootPending,
             WindowsUpdate RebootRequired, PendingFileRenameOperations); IP configuration
             (Win32_NetworkAdapterConfiguration IPEnabled); with params.network-probe, one ping
             (1 s) to each gateway and DNS server and a lookup of the computer's domain; the
             clock against params.technician_utc; critical events of the last 24 h (System and
             Application, Level 1) and disk failure events of the last 7 days (System log).
             ok = true: the readings themselves judge nothing.
    fix    : none: diagnose only reads (an error if asked).
    verify : none (an error if asked).

    Input : -Request = base64 of UTF-8 JSON {action, steps, params, before}.
            Optional params: network-probe (default true), technician_utc (yyyy-MM-ddTHH:mm:ssZ).
    Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.
    Values from the input are data only: nothing here builds code or a command from them.

    From _common.ps1 (sent ahead of this script, which also sets $ErrorActionPreference = 'Stop'):
    Invoke-L1fixSteps (decodes the input, runs the steps, writes the JSON), Get-Param.
#>
param([Parameter(Mandatory = $true)][string]$Request)

$TimeFormat = "yyyy-MM-dd'T'HH:mm:ss'Z'"
$PingTimeoutMs = 1000
$CriticalHours = 24
$DiskEventDays = 7
# System log events of a failing disk: disk 7 (bad block), 9 (no answer in time), 11 (controller
# error), 51 (error during paging), 153 (I/O retried); Ntfs 55 (file system structure corrupt).
$DiskEventIds = @{ disk = @(7, 9, 11, 51, 153); Ntfs = @(55) }
$RebootKeys = [ordered]@{
    'Component Based Servicing' = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending'
    'Windows Update'            = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired'
}
$SessionManagerKey = 'HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\Session Manager'
$ServicesKey = 'HKLM:\SYSTEM\CurrentControlSet\Services'

function Format-Utc {
    param([DateTime]$Time)
    return $Time.ToUniversalTime().ToString($TimeFormat, [Globalization.CultureInfo]::InvariantCulture)
}

function Get-Sessions {
    # Every session quser lists (console and RDP, active and disconnected): user, session name,
    # id, state. quser writes "No User exists for *" on stderr when nobody is logged on, and is
    # missing on Home editions: no session then.
    $ErrorActionPreference = 'Continue'
    $lines = @()
    if (Get-Command -Name 'quser.exe' -CommandType Application -ErrorAction SilentlyContinue) {
        $lines = @(& quser.exe 2>$null | Select-Object -Skip 1)
    }
    foreach ($line in $lines) {
        $match = [regex]::Match([string]$line, '^.(\S+)\s+(?:(\S+)\s+)?(\d+)\s+(\S+)')
        if ($match.Success) {
            [ordered]@{
                user    = $match.Groups[1].Value
                session = $match.Groups[2].Value
                id      = [int]$match.Groups[3].Value
                state   = $match.Groups[4].Value
            }
        }
    }
}

function Get-Volumes {
    # Local fixed disks; the system one is where temp-clean frees space.
    foreach ($disk in @(Get-CimInstance -ClassName Win32_LogicalDisk -Filter 'DriveType = 3')) {
        $size = [int64]$disk.Size
        $free = [int64]$disk.FreeSpace
        $percent = $null
        if ($size -gt 0) {
            $percent = [Math]::Round(100.0 * $free / $size, 1)
        }
        [ordered]@{
            name         = [string]$disk.DeviceID
            size_bytes   = $size
            free_bytes   = $free
            free_percent = $percent
            system       = ([string]$disk.DeviceID -eq $env:SystemDrive)
        }
    }
}

function Test-TriggerStart {
    param([string]$Name)
    return Test-Path -LiteralPath (Join-Path (Join-Path $ServicesKey $Name) 'TriggerInfo')
}

function Get-StoppedAutomaticServices {
    # StartMode Auto but not Running. Delayed or trigger-start services stop by themselves when
    # idle: those with exit code 0 are normal.
    foreach ($svc in @(Get-CimInstance -ClassName Win32_Service -Filter "StartMode = 'Auto' AND State <> 'Running'")) {
        $quiet = ($svc.DelayedAutoStart -eq $true) -or (Test-TriggerStart -Name $svc.Name)
        if ($quiet -and [int]$svc.ExitCode -eq 0) {
            continue
        }
        [ordered]@{
            name         = [string]$svc.Name
            display_name = [string]$svc.DisplayName
            start_type   = 'Automatic'
            status       = [string]$svc.State
            exit_code    = [int]$svc.ExitCode
        }
    }
}

function Get-PendingReboot {
    # The reasons Windows waits for a restart.
    foreach ($reason in $RebootKeys.Keys) {
        if (Test-Path -LiteralPath $RebootKeys[$reason]) {
            $reason
        }
    }
    $renames = [Microsoft.Win32.Registry]::GetValue($SessionManagerKey, 'PendingFileRenameOperations', $null)
    if (@($renames | Where-Object { -not [string]::IsNullOrWhiteSpace([string]$_) }).Count -gt 0) {
        'PendingFileRenameOperations'
    }
}

function Test-Ping {
    param([string]$Address)
    $ping = New-Object System.Net.NetworkInformation.Ping
    try {
        return $ping.Send($Address, $PingTimeoutMs).Status -eq [System.Net.NetworkInformation.IPStatus]::Success
    }
    catch {
        return $false
    }
    finally {
        $ping.Dispose()
    }
}

function Get-Network {
    param([bool]$Probe)
    $adapters = @(foreach ($nic in @(Get-CimInstance -ClassName Win32_NetworkAdapterConfiguration -Filter 'IPEnabled = TRUE')) {
            $addresses = @()
            for ($i = 0; $i -lt @($nic.IPAddress).Count; $i++) {
                $addresses += "$(@($nic.IPAddress)[$i])/$(@($nic.IPSubnet)[$i])"
            }
            [ordered]@{
                name        = [string]$nic.Description
                addresses   = $addresses
                gateways    = @($nic.DefaultIPGateway | Where-Object { $_ })
                dns_servers = @($nic.DNSServerSearchOrder | Where-Object { $_ })
                dhcp        = [bool]$nic.DHCPEnabled
            }
        })
    $network = [ordered]@{
        adapters        = $adapters
        gateways        = @($adapters | ForEach-Object { $_.gateways } | Select-Object -Unique)
        dns_servers     = @($adapters | ForEach-Object { $_.dns_servers } | Select-Object -Unique)
        probed          = $Probe
        reachable       = @()
        name_resolution = $null
    }
    if (-not $Probe) {
        return $network
    }
    $network.reachable = @(
        foreach ($address in $network.gateways) {
            [ordered]@{ address = $address; role = 'gateway'; reachable = (Test-Ping -Address $address) }
        }
        foreach ($address in $network.dns_servers) {
            [ordered]@{ address = $address; role = 'dns'; reachable = (Test-Ping -Address $address) }
        }
    )
    $computer = Get-CimInstance -ClassName Win32_ComputerSystem
    if ($computer.PartOfDomain) {
        $lookup = [ordered]@{ name = [string]$computer.Domain; ok = $true; error = $null }
        try {
            $null = [System.Net.Dns]::GetHostAddresses($lookup.name)
        }
        catch {
            $lookup.ok = $false
            $lookup.error = $_.Exception.InnerException.Message
        }
        $network.name_resolution = $lookup
    }
    return $network
}

function Get-Clock {
    param([string]$TechnicianUtc)
    $now = [DateTime]::UtcNow
    $clock = [ordered]@{ host_utc = Format-Utc -Time $now; technician_utc = $null; skew_s = $null }
    $styles = [Globalization.DateTimeStyles]'AssumeUniversal, AdjustToUniversal'
    $parsed = [DateTime]::MinValue
    if ([DateTime]::TryParseExact($TechnicianUtc, $TimeFormat, [Globalization.CultureInfo]::InvariantCulture, $styles, [ref]$parsed)) {
        $clock.technician_utc = Format-Utc -Time $parsed
        $clock.skew_s = [Math]::Round(($now - $parsed).TotalSeconds, 1)
    }
    return $clock
}

function Get-Events {
    # Get-WinEvent reports "no events found" as an error: none is an empty list here.
    param([hashtable]$Filter)
    return @(Get-WinEvent -FilterHashtable $Filter -ErrorAction SilentlyContinue)
}

function Get-CriticalEvents {
    $since = (Get-Date).AddHours(-$CriticalHours)
    $found = @(Get-Events -Filter @{ LogName = 'System', 'Application'; Level = 1; StartTime = $since })
    return [ordered]@{
        hours   = $CriticalHours
        count   = $found.Count
        sources = @($found | ForEach-Object { "$($_.ProviderName) $($_.Id)" } | Sort-Object -Unique)
    }
}

function Get-DiskEvents {
    $since = (Get-Date).AddDays(-$DiskEventDays)
    $found = @(foreach ($provider in $DiskEventIds.Keys) {
            Get-Events -Filter @{ LogName = 'System'; ProviderName = $provider; Id = $DiskEventIds[$provider]; StartTime = $since }
        })
    return [ordered]@{
        days   = $DiskEventDays
        count  = $found.Count
        events = @($found | Select-Object -First 10 | ForEach-Object {
                [ordered]@{
                    provider = [string]$_.ProviderName
                    id       = [int]$_.Id
                    time     = Format-Utc -Time $_.TimeCreated
                    message  = ([string]$_.Message -replace '\s+', ' ').Trim()
                }
            })
    }
}

function Get-Readings {
    param($Settings)
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    $clock = Get-Clock -TechnicianUtc $Settings.TechnicianUtc
    $state = [ordered]@{
        computer             = $env:COMPUTERNAME
        os                   = [string]$os.Caption
        last_boot            = Format-Utc -Time $os.LastBootUpTime
        uptime_s             = [int64]([DateTime]::Now - $os.LastBootUpTime).TotalSeconds
        sessions             = @(Get-Sessions)
        volumes              = @(Get-Volumes)
        services_not_running = @(Get-StoppedAutomaticServices)
        pending_reboot       = @(Get-PendingReboot)
        network              = Get-Network -Probe $Settings.Probe
        clock                = $clock
        critical_events      = Get-CriticalEvents
        disk_events          = Get-DiskEvents
    }
    return [ordered]@{ ok = $true; state = $state; summary = "Health of $($state.computer) read" }
}

Invoke-L1fixSteps -EncodedRequest $Request -Prepare {
    param($Request)
    @{
        Probe         = [bool](Get-Param -Request $Request -Name 'network-probe' -Default $true)
        TechnicianUtc = [string](Get-Param -Request $Request -Name 'technician_utc' -Default '')
    }
} -Check {
    param($Settings)
    Get-Readings -Settings $Settings
} -Fix {
    throw 'diagnose only reads: it has no fix step.'
} -Verify {
    throw 'diagnose only reads: it has no verify step.'
}
