<#
    l1fix printer-reconnect - Windows PowerShell 5.1.

    A print server's queue (params.printer = \\server\queue):
    check  : the Spooler must run. The print server must answer on TCP 445 (SMB), else an error:
             nothing is touched. The server must share the queue (Get-Printer -ComputerName), else
             an error. Its status and driver; whether that driver is installed here; the Point and
             Print policy RestrictDriverInstallationToAdministrators (HKLM\SOFTWARE\Policies\
             Microsoft\Windows NT\Printers\PointAndPrint; absent = 1 since KB5005652).
             Scope machine (default): the per-machine connection, registry
             HKLM\SYSTEM\CurrentControlSet\Control\Print\Connections\,,server,queue, and the
             printer's status as this computer sees it. Scope user (params.user, who must be
             logged on): HKU\<SID>\Printers\Connections\,,server,queue, status from the server.
             ok = connected in that scope and status Normal.
    fix    : when the driver is missing and Point and Print may not install it, nothing is changed
             (the one-line message says what L2 must do). Scope machine: remove the per-machine
             connection (printui /gd), add it (printui /ga), restart the Spooler so it applies
             now rather than at the users' next logon. Scope user: in the user's session, as the
             user (one-shot scheduled tasks): printui /dn (remove) then printui /in (add).
    A TCP/IP printer (params.printer = address, params.driver, params.name):
    check  : the printer by name, its port (Get-PrinterPort) and that port's address, the driver.
             ok = the printer's port points to the address and its status is Normal.
    fix    : install the driver from the driver store if needed (Add-PrinterDriver; when that
             fails, nothing is changed); add the Standard TCP/IP port IP_<address> if missing;
             remove the printer and add it again on that port.
    verify : as check; ok = present and status Normal.

    Input : -Request = base64 of UTF-8 JSON {action, steps, params, before}.
            params: printer (required), user, driver, name; timeout_s (default 120).
    Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.
    Values from the input are data only: registry key names, cmdlet parameters, and one
    quoted argument for printui (the path holds no double quote: Split-PrinterPath).

    From _common.ps1 (sent ahead of this script, which also sets $ErrorActionPreference = 'Stop'):
    Invoke-L1fixSteps, Get-Param, Get-RequiredParam, Get-ServiceByName, Stop-ServiceTree, Start-ServiceAndWait,
    Start-Dependents, ConvertTo-NativeArgument, Invoke-Native, Get-LoggedOnUsers, Find-Session,
    Get-UserSid, Invoke-AsLoggedOnUser.
#>
param([Parameter(Mandatory = $true)][string]$Request)

$MachineConnections = 'SYSTEM\CurrentControlSet\Control\Print\Connections'
$PointAndPrintKey = 'HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Microsoft\Windows NT\Printers\PointAndPrint'
$SmbPort = 445
$Rundll32 = Join-Path $env:SystemRoot 'System32\rundll32.exe'
$ConnectTimeoutMs = 3000
$SessionNeeded = "a printer connection for one user is added in the user's own session. Ask the user to log on, or connect the printer for every user of this PC (without --user)."

function Split-PrinterPath {
    # \\server\queue -> [ordered]@{ server; queue }; $null for a TCP/IP printer's address.
    param([string]$Printer)
    if (-not $Printer.StartsWith('\')) {
        return $null
    }
    $match = [regex]::Match($Printer, '^\\\\([A-Za-z0-9.-]+)\\([^"/\\\[\]:|<>+=;,?*\x00-\x1f]+)$')
    if (-not $match.Success) {
        throw "'$Printer' is not a printer path of the form \\server\queue."
    }
    return [ordered]@{ server = $match.Groups[1].Value; queue = $match.Groups[2].Value }
}

function Test-TcpPort {
    param([string]$Address, [int]$Port)
    $client = New-Object System.Net.Sockets.TcpClient
    try {
        return $client.ConnectAsync($Address, $Port).Wait($ConnectTimeoutMs)
    }
    catch {
        return $false
    }
    finally {
        $client.Close()
    }
}

function Test-RegistryKey {
    param([Microsoft.Win32.RegistryKey]$Hive, [string]$Path)
    $key = $Hive.OpenSubKey($Path)
    if ($null -eq $key) {
        return $false
    }
    $key.Close()
    return $true
}

function Test-DriverInstalled {
    param([string]$Driver)
    return @(Get-PrinterDriver | Where-Object { $_.Name -eq $Driver }).Count -gt 0
}

function Test-PointAndPrintRestricted {
    # Since KB5005652 (August 2021) only administrators install printer drivers unless the policy is 0.
    $value = [Microsoft.Win32.Registry]::GetValue($PointAndPrintKey, 'RestrictDriverInstallationToAdministrators', $null)
    return ($null -eq $value) -or ([int]$value -ne 0)
}

function Get-LocalPrinter {
    # A printer as this computer lists it, by exact name (Get-Printer -Name reads wildcards).
    param([string]$Name)
    return @(Get-Printer | Where-Object { $_.Name -eq $Name }) | Select-Object -First 1
}

function Assert-SpoolerRunning {
    $spooler = Get-ServiceByName -Name 'Spooler'
    if ($null -eq $spooler -or [string]$spooler.Status -ne 'Running') {
        $status = 'not installed'
        if ($null -ne $spooler) {
            $status = [string]$spooler.Status
        }
        throw "The Print Spooler is not running ($status): run spooler-restart first, then printer-reconnect."
    }
}

function Get-ConnectionState {
    param($Settings)
    Assert-SpoolerRunning
    $server = $Settings.Path.server
    $queue = $Settings.Path.queue
    $state = [ordered]@{
        printer                    = $Settings.Printer
        kind                       = 'connection'
        server                     = $server
        queue                      = $queue
        scope                      = 'machine'
        user                       = $null
        user_sid                   = $null
        session_id                 = $null
        server_status              = $null
        driver                     = $null
        driver_installed           = $false
        point_and_print_restricted = Test-PointAndPrintRestricted
        machine_connection         = $false
        user_connection            = $null
        present                    = $false
        status                     = 'Missing'
    }
    if ($Settings.User -ne '') {
        $session = Find-Session -Login $Settings.User -Sessions @(Get-LoggedOnUsers) -Why $SessionNeeded
        $state.scope = 'user'
        $state.user = $session.login
        $state.session_id = $session.session_id
        $state.user_sid = Get-UserSid -Login $session.login
    }
    if (-not (Test-TcpPort -Address $server -Port $SmbPort)) {
        throw "Print server '$server' does not answer on TCP port $SmbPort (SMB) from this computer: nothing was changed. Check that the server is up and reachable from this PC, or escalate."
    }
    $shared = @(Get-Printer -ComputerName $server | Where-Object { $_.Shared })
    $found = @($shared | Where-Object { $_.ShareName -eq $queue -or $_.Name -eq $queue }) | Select-Object -First 1
    if ($null -eq $found) {
        $names = 'none'
        if ($shared.Count -gt 0) {
            $names = (@($shared | ForEach-Object { $_.ShareName }) -join ', ')
        }
        throw "Print server '$server' shares no printer named '$queue' (it shares: $names): check the path with the user, nothing was changed."
    }
    $state.server_status = [string]$found.PrinterStatus
    $state.driver = [string]$found.DriverName
    $state.driver_installed = Test-DriverInstalled -Driver $state.driver
    $key = ",,$server,$queue"
    $state.machine_connection = Test-RegistryKey -Hive ([Microsoft.Win32.Registry]::LocalMachine) -Path "$MachineConnections\$key"
    if ($state.scope -eq 'user') {
        $state.user_connection = Test-RegistryKey -Hive ([Microsoft.Win32.Registry]::Users) -Path "$($state.user_sid)\Printers\Connections\$key"
        $state.present = $state.user_connection
        if ($state.present) {
            $state.status = $state.server_status  # the user's own view is not visible from here
        }
    }
    else {
        $state.present = $state.machine_connection
        if ($state.present) {
            $state.status = $state.server_status
            $local = Get-LocalPrinter -Name $Settings.Printer
            if ($null -ne $local) {
                $state.status = [string]$local.PrinterStatus
            }
        }
    }
    return $state
}

function Get-TcpState {
    param($Settings)
    Assert-SpoolerRunning
    $state = [ordered]@{
        printer          = $Settings.Printer
        kind             = 'tcpip'
        name             = $Settings.Name
        driver           = $Settings.Driver
        driver_installed = Test-DriverInstalled -Driver $Settings.Driver
        port             = "IP_$($Settings.Printer)"
        printer_port     = $null
        port_address     = $null
        present          = $false
        status           = 'Missing'
    }
    $printer = Get-LocalPrinter -Name $Settings.Name
    if ($null -ne $printer) {
        $state.printer_port = [string]$printer.PortName
        $state.status = [string]$printer.PrinterStatus
        $port = @(Get-PrinterPort | Where-Object { $_.Name -eq $printer.PortName }) | Select-Object -First 1
        if ($null -ne $port) {
            $state.port_address = [string]$port.PrinterHostAddress
        }
        $state.present = $state.port_address -eq $Settings.Printer
    }
    return $state
}

function Get-PrinterState {
    param($Settings)
    if ($null -eq $Settings.Path) {
        return Get-TcpState -Settings $Settings
    }
    return Get-ConnectionState -Settings $Settings
}

function Get-Where {
    # "for every user of this computer" or "for CORP\jdupont (session 2)"; a TCP/IP printer's port.
    param($State)
    if ($State.kind -eq 'tcpip') {
        return "on port $($State.port)"
    }
    if ($State.scope -eq 'user') {
        return "for $($State.user) (session $($State.session_id))"
    }
    return 'for every user of this computer'
}

function Get-Observation {
    param($State, [string]$Step)
    $ok = $State.present -and $State.status -eq 'Normal'
    $what = "Printer $($State.printer)"
    if ($State.kind -eq 'tcpip') {
        $what = "TCP/IP printer '$($State.name)' ($($State.printer))"
    }
    $still = ''
    if ($Step -eq 'verify') {
        $still = 'still '
    }
    if ($ok) {
        $summary = "$what is connected $(Get-Where $State) and ready (Normal)."
    }
    elseif (-not $State.present -and $State.kind -eq 'tcpip' -and $null -ne $State.printer_port) {
        $address = 'a port that does not exist'
        if ($null -ne $State.port_address) {
            $address = $State.port_address
        }
        $summary = "$what $($still)prints to port $($State.printer_port) ($address), not to $($State.printer)."
    }
    elseif (-not $State.present) {
        $summary = "$what is $($still)not connected $(Get-Where $State)."
    }
    else {
        $summary = "$what is connected $(Get-Where $State) but its status is $($still)$($State.status)."
    }
    return [ordered]@{ ok = $ok; state = $State; summary = $summary }
}

function Restart-Spooler {
    # Per-machine connections reach the users when the Spooler starts (or at their next logon).
    param([int]$TimeoutS)
    $timeout = [TimeSpan]::FromSeconds($TimeoutS)
    $spooler = Get-ServiceByName -Name 'Spooler'
    $running = @($spooler.DependentServices | Where-Object { $_.Status -eq 'Running' })
    Stop-ServiceTree -Service $spooler -Timeout $timeout
    $startError = Start-ServiceAndWait -Service $spooler -Timeout $timeout
    if ($null -eq $startError) {
        Start-Dependents -Dependents $running -Timeout $timeout | Out-Null
    }
    return $startError
}

function Get-PrintUIArguments {
    # printui /ga, /gd (a per-machine connection: add, remove) or /in, /dn (the running user's own); /q: no dialog.
    param([string]$Switch, [string]$Printer)
    return @('printui.dll,PrintUIEntry', $Switch, '/q', '/n', $Printer)
}

function Invoke-PrintUI {
    param([string]$Switch, [string]$Printer)
    Invoke-Native -FilePath $Rundll32 -Arguments (Get-PrintUIArguments -Switch $Switch -Printer $Printer) | Out-Null
}

function Invoke-PrintUIAsUser {
    # printui as the logged-on user, in their session: run here, it would act on the technician's profile.
    param($State, [string]$Switch, [int]$TimeoutS)
    $arguments = @(Get-PrintUIArguments -Switch $Switch -Printer $State.printer | ForEach-Object { ConvertTo-NativeArgument -Value $_ })
    return Invoke-AsLoggedOnUser -Login $State.user -Prefix 'printer' -TimeoutS $TimeoutS -Execute $Rundll32 -Argument ($arguments -join ' ')
}

function New-Fix {
    return [ordered]@{
        summary                  = ''
        removed                  = $false
        added                    = $false
        method                   = $null
        task                     = $null
        task_exit_code           = $null
        spooler_restarted        = $false
        spooler_error            = $null
        driver_installed_now     = $false
        point_and_print_blocked  = $false
        port_added               = $null
    }
}

function Invoke-ConnectionFix {
    param($Settings)
    $state = Get-ConnectionState -Settings $Settings
    $fix = New-Fix
    if (-not $state.driver_installed -and $state.point_and_print_restricted) {
        $fix.point_and_print_blocked = $true
        $fix.summary = "Point and Print: driver '$($state.driver)' of $($state.printer) is not installed on this computer and the policy RestrictDriverInstallationToAdministrators (KB5005652) lets only administrators install printer drivers: nothing was changed; L2 must install that driver on this PC (from the print server's driver package), then run printer-reconnect again."
        return $fix
    }
    if ($state.scope -eq 'user') {
        $fix.method = 'user task'
        if ($state.user_connection) {
            Invoke-PrintUIAsUser -State $state -Switch '/dn' -TimeoutS $Settings.TimeoutS | Out-Null
            $fix.removed = $true
        }
        $task = Invoke-PrintUIAsUser -State $state -Switch '/in' -TimeoutS $Settings.TimeoutS
        $fix.task = $task.task
        $fix.task_exit_code = $task.exit_code
        $fix.added = Test-RegistryKey -Hive ([Microsoft.Win32.Registry]::Users) -Path "$($state.user_sid)\Printers\Connections\,,$($state.server),$($state.queue)"
        $outcome = 'done'
        if ($task.timed_out) {
            $outcome = "it did not finish within $($Settings.TimeoutS) s"
        }
        elseif (-not $fix.added) {
            $outcome = "printui /in did not add it (exit code $($task.exit_code))"
        }
        $fix.summary = "Re-added $($state.printer) for $($state.user) in session $($state.session_id), as the user: $outcome."
        return $fix
    }
    $fix.method = 'printui per-machine'
    if ($state.machine_connection) {
        Invoke-PrintUI -Switch '/gd' -Printer $state.printer
        $fix.removed = $true
    }
    Invoke-PrintUI -Switch '/ga' -Printer $state.printer
    $fix.added = Test-RegistryKey -Hive ([Microsoft.Win32.Registry]::LocalMachine) -Path "$MachineConnections\,,$($state.server),$($state.queue)"
    $fix.spooler_error = Restart-Spooler -TimeoutS $Settings.TimeoutS
    $fix.spooler_restarted = $null -eq $fix.spooler_error
    $verb = 'Added'
    if ($fix.removed) {
        $verb = 'Removed and re-added'
    }
    $summary = "$verb the per-machine connection to $($state.printer) (printui /ga)"
    if (-not $fix.added) {
        $summary = "printui /ga did not add the per-machine connection to $($state.printer)"
    }
    if ($fix.spooler_restarted) {
        $summary += '; restarted the Print Spooler so every user gets it now.'
    }
    else {
        $summary += "; the Print Spooler did not start again: $($fix.spooler_error)."
    }
    $fix.summary = $summary
    return $fix
}

function Invoke-TcpFix {
    param($Settings)
    $state = Get-TcpState -Settings $Settings
    $fix = New-Fix
    $fix.method = 'Standard TCP/IP port'
    if (-not $state.driver_installed) {
        try {
            Add-PrinterDriver -Name $state.driver
            $fix.driver_installed_now = $true
        }
        catch {
            $fix.summary = "Driver '$($state.driver)' is not installed and could not be installed from the driver store ($($_.Exception.Message)): nothing was changed; L2 must install the driver on this PC, then run printer-reconnect again."
            return $fix
        }
    }
    $fix.port_added = $false
    if (@(Get-PrinterPort | Where-Object { $_.Name -eq $state.port }).Count -eq 0) {
        Add-PrinterPort -Name $state.port -PrinterHostAddress $state.printer
        $fix.port_added = $true
    }
    $existing = Get-LocalPrinter -Name $state.name
    if ($null -ne $existing) {
        Remove-Printer -InputObject $existing
        $fix.removed = $true
    }
    Add-Printer -Name $state.name -DriverName $state.driver -PortName $state.port
    $fix.added = $true
    $summary = "Added TCP/IP printer '$($state.name)' on port $($state.port) ($($state.printer)) with driver '$($state.driver)'"
    if ($fix.removed) {
        $summary = "Removed and re-added TCP/IP printer '$($state.name)' on port $($state.port) ($($state.printer)) with driver '$($state.driver)'"
    }
    if ($fix.port_added) {
        $summary += '; created the port'
    }
    if ($fix.driver_installed_now) {
        $summary += '; installed the driver from the driver store'
    }
    $fix.summary = "$summary."
    return $fix
}

Invoke-L1fixSteps -EncodedRequest $Request -Prepare {
    param($Request)
    $printer = Get-RequiredParam -Request $Request -Name 'printer' -What "\\server\queue, or a TCP/IP printer's address"
    $path = Split-PrinterPath -Printer $printer
    $name = [string](Get-Param -Request $Request -Name 'name' -Default $printer)
    $driver = [string](Get-Param -Request $Request -Name 'driver' -Default '')
    if ($null -eq $path -and $driver -eq '') {
        throw "The parameter 'driver' is missing: a TCP/IP printer is added with its driver's name."
    }
    @{
        Printer  = $printer
        Path     = $path
        User     = [string](Get-Param -Request $Request -Name 'user' -Default '')
        Driver   = $driver
        Name     = $name
        TimeoutS = [int](Get-Param -Request $Request -Name 'timeout_s' -Default 120)
    }
} -Check {
    param($Settings)
    Get-Observation -State (Get-PrinterState -Settings $Settings) -Step 'check'
} -Fix {
    param($Settings)
    if ($null -eq $Settings.Path) {
        Invoke-TcpFix -Settings $Settings
    }
    else {
        Invoke-ConnectionFix -Settings $Settings
    }
} -Verify {
    param($Settings)
    Get-Observation -State (Get-PrinterState -Settings $Settings) -Step 'verify'
}
