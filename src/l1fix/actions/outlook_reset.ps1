<#
    l1fix outlook-reset - Windows PowerShell 5.1.

    WinRM runs as the technician: a user's Outlook settings live in THEIR registry hive,
    HKEY_USERS\<SID> while they are logged on (Win32_UserProfile.Loaded). Otherwise this script
    loads C:\Users\<x>\NTUSER.DAT as HKEY_USERS\l1fix_<SID> with reg.exe and unloads it in a
    finally block (handles closed and [gc]::Collect() first), in every step.

    check  : the account (login -> SID), its Win32_UserProfile (none: an error), Outlook running
             as the user (Win32_Process outlook.exe, GetOwnerSid), the profile key
             Software\Microsoft\Office\16.0\Outlook\Profiles and the DefaultProfile value, the
             OST files in %LOCALAPPDATA%\Microsoft\Outlook, the PST files there and in
             Documents\Outlook Files, and the latest l1fix backup not yet restored.
             Reset: ok = no profile key, no DefaultProfile and no OST (or params.keep-ost):
             Outlook has nothing to start from, it creates a new profile anyway.
             Undo: never ok; an error when there is no backup to restore.
             Outlook running for the user: said in the summary; the fix refuses (an error, nothing
             written) unless params.close-outlook.
    fix    : reset: create the backup folder
             C:\ProgramData\l1fix\backup\outlook\<profile folder>\<UTC time>\ - when it cannot be
             written (read-only disk, rights) the fix stops there, nothing closed or removed; close
             the user's Outlook (params.close-outlook); back up (reg export of the Profiles key to
             profiles.reg, manifest.json with DefaultProfile and the OST renames); only then
             delete the key and the value (Outlook creates a new profile at its next start) and
             rename each OST to <name>.l1fix-<time>.bak (not with params.keep-ost). PST files
             are listed, never touched.
             undo: the latest backup not yet restored: a profile key Outlook recreated since is
             exported to recreated-<time>.reg in that backup and replaced; profiles.reg is
             imported (its key paths rewritten to where the hive is loaded now), DefaultProfile
             set again, each renamed OST renamed back (an OST recreated since is renamed aside,
             never deleted); the manifest records when it was restored.
    verify : reset: ok = no profile key, no DefaultProfile, no OST left (or keep-ost), a backup
             exists, the PST files are those check found. undo: ok = the backed-up profiles, the
             DefaultProfile and the OST files are back.

    Input : -Request = base64 of UTF-8 JSON {action, steps, params, before}.
            params: user (required: user or DOMAIN\user); keep-ost, close-outlook, undo (booleans).
    Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.
    The login is data only: translated to a SID and compared, never part of code, of a path or
    of a command line (backup folders are named after the profile folder Windows reports).

    From _common.ps1: Invoke-L1fixSteps, Get-Param, Get-RequiredParam, Format-Count, Invoke-Native.
#>
param([Parameter(Mandatory = $true)][string]$Request)

$OutlookKey = 'Software\Microsoft\Office\16.0\Outlook'
$BackupRoot = Join-Path $env:ProgramData 'l1fix\backup\outlook'
$RegExe = Join-Path $env:SystemRoot 'System32\reg.exe'
$TimeFormat = "yyyy-MM-dd'T'HH:mm:ss'Z'"

function Find-UserProfile {
    # The account's SID (the login translated by Windows) and its Win32_UserProfile.
    param([string]$Login)
    try {
        $sid = (New-Object System.Security.Principal.NTAccount -ArgumentList $Login).Translate([System.Security.Principal.SecurityIdentifier]).Value
        $account = (New-Object System.Security.Principal.SecurityIdentifier -ArgumentList $sid).Translate([System.Security.Principal.NTAccount]).Value
    }
    catch {
        throw "User '$Login' is not an account this computer knows (give user or DOMAIN\user)."
    }
    $found = @(Get-CimInstance -ClassName Win32_UserProfile | Where-Object { $_.SID -eq $sid })
    if ($found.Count -eq 0) {
        throw "User '$account' has no profile on this computer (never logged on here): there is no Outlook profile to reset."
    }
    $path = [string]$found[0].LocalPath
    return [ordered]@{
        login  = $account
        sid    = $sid
        path   = $path
        leaf   = Split-Path -Leaf $path
        loaded = [bool]$found[0].Loaded
    }
}

function Get-OutlookProcessIds {
    # outlook.exe processes running as the user.
    param([string]$Sid)
    $ids = @()
    foreach ($process in @(Get-CimInstance -ClassName Win32_Process -Filter "Name = 'outlook.exe'")) {
        $owner = Invoke-CimMethod -InputObject $process -MethodName GetOwnerSid
        if ($owner.ReturnValue -eq 0 -and $owner.Sid -eq $Sid) {
            $ids += [int]$process.ProcessId
        }
    }
    return $ids
}

function Assert-OutlookClosed {
    # Refuse while Outlook runs as the user; with -Close, close it and return the ids closed.
    param($UserProfile, [bool]$Close)
    $ids = @(Get-OutlookProcessIds -Sid $UserProfile.sid)
    if ($ids.Count -eq 0) {
        return @()
    }
    if (-not $Close) {
        throw "Outlook is running for $($UserProfile.login) (process $($ids -join ', ')): ask the user to close it, or run again with --close-outlook."
    }
    foreach ($id in $ids) {
        Stop-Process -Id $id -Force -ErrorAction SilentlyContinue
        Wait-Process -Id $id -Timeout 30 -ErrorAction SilentlyContinue
    }
    return $ids
}

function Mount-UserHive {
    # Where the user's hive is under HKEY_USERS: their SID when loaded, else l1fix_<SID> loaded here.
    param($UserProfile)
    if ($UserProfile.loaded) {
        return [ordered]@{ root = $UserProfile.sid; mounted = $false }
    }
    $root = "l1fix_$($UserProfile.sid)"
    $load = Invoke-Native -FilePath $RegExe -Arguments @('load', "HKU\$root", (Join-Path $UserProfile.path 'NTUSER.DAT'))
    if ($load.exit_code -ne 0) {
        throw "Could not load the registry hive of $($UserProfile.login) ($($load.output))."
    }
    return [ordered]@{ root = $root; mounted = $true }
}

function Dismount-UserHive {
    # reg unload fails while a handle into the hive is open: close them, collect, retry.
    param($Hive)
    if (-not $Hive.mounted) {
        return
    }
    for ($try = 1; $try -le 5; $try++) {
        [gc]::Collect()
        [gc]::WaitForPendingFinalizers()
        if ((Invoke-Native -FilePath $RegExe -Arguments @('unload', "HKU\$($Hive.root)")).exit_code -eq 0) {
            return
        }
        Start-Sleep -Milliseconds 500
    }
    throw "Could not unload the registry hive HKU\$($Hive.root): unload it with reg unload before the user logs on."
}

function Get-OutlookRegistry {
    param([string]$Root)
    $found = [ordered]@{ profiles_key = $false; profiles = @(); default_profile = $null }
    $key = [Microsoft.Win32.Registry]::Users.OpenSubKey("$Root\$OutlookKey")
    if ($null -eq $key) {
        return $found
    }
    try {
        $found.default_profile = $key.GetValue('DefaultProfile', $null)
        $profilesKey = $key.OpenSubKey('Profiles')
        if ($null -ne $profilesKey) {
            $found.profiles_key = $true
            $found.profiles = @($profilesKey.GetSubKeyNames())
            $profilesKey.Close()
        }
    }
    finally {
        $key.Close()
    }
    return $found
}

function Remove-OutlookProfile {
    param([string]$Root)
    $key = [Microsoft.Win32.Registry]::Users.OpenSubKey("$Root\$OutlookKey", $true)
    if ($null -eq $key) {
        return
    }
    try {
        $key.DeleteSubKeyTree('Profiles', $false)
        $key.DeleteValue('DefaultProfile', $false)
    }
    finally {
        $key.Close()
    }
}

function Get-OutlookFiles {
    # OST file names in the Outlook data folder; PST full paths there and in Documents\Outlook Files.
    param($UserProfile)
    $dataFolder = Join-Path $UserProfile.path 'AppData\Local\Microsoft\Outlook'
    $files = [ordered]@{ folder = $dataFolder; ost = @(); pst = @() }
    foreach ($folder in @($dataFolder, (Join-Path $UserProfile.path 'Documents\Outlook Files'))) {
        if (Test-Path -LiteralPath $folder -PathType Container) {
            foreach ($file in @(Get-ChildItem -LiteralPath $folder -File -Force)) {
                if ($file.Extension -eq '.pst') {
                    $files.pst += $file.FullName
                }
                elseif ($file.Extension -eq '.ost' -and $folder -eq $dataFolder) {
                    $files.ost += $file.Name
                }
            }
        }
    }
    return $files
}

function Get-Backups {
    # The user's backups, oldest first: [ordered]@{ folder; manifest }.
    param($UserProfile)
    $userRoot = Join-Path $BackupRoot $UserProfile.leaf
    $backups = @()
    if (Test-Path -LiteralPath $userRoot -PathType Container) {
        foreach ($folder in @(Get-ChildItem -LiteralPath $userRoot -Directory | Sort-Object -Property Name)) {
            $manifestPath = Join-Path $folder.FullName 'manifest.json'
            if (Test-Path -LiteralPath $manifestPath -PathType Leaf) {
                $manifest = ConvertFrom-Json -InputObject ([System.IO.File]::ReadAllText($manifestPath))
                $backups += [ordered]@{ folder = $folder.FullName; manifest = $manifest }
            }
        }
    }
    return $backups
}

function Get-LatestBackup {
    param($UserProfile)
    $open = @(Get-Backups -UserProfile $UserProfile | Where-Object { $null -eq $_.manifest.restored })
    if ($open.Count -eq 0) {
        return $null
    }
    return $open[-1]
}

function Get-OutlookState {
    param($Settings)
    $userProfile = Find-UserProfile -Login $Settings.User
    $hive = Mount-UserHive -UserProfile $userProfile
    try {
        $registry = Get-OutlookRegistry -Root $hive.root
    }
    finally {
        Dismount-UserHive -Hive $hive
    }
    $files = Get-OutlookFiles -UserProfile $userProfile
    $latest = Get-LatestBackup -UserProfile $userProfile
    $hiveText = 'loaded (the user is logged on)'
    if ($hive.mounted) {
        $hiveText = 'loaded by l1fix from NTUSER.DAT, then unloaded'
    }
    $state = [ordered]@{
        mode                = $Settings.Mode
        user                = $userProfile.login
        sid                 = $userProfile.sid
        profile_path        = $userProfile.path
        hive                = $hiveText
        outlook_running     = $false
        outlook_process_ids = @(Get-OutlookProcessIds -Sid $userProfile.sid)
        profiles_key        = $registry.profiles_key
        profiles            = @($registry.profiles)
        default_profile     = $registry.default_profile
        ost_files           = @($files.ost)
        pst_files           = @($files.pst)
        backup_folder       = $null
        backup              = $null
    }
    $state.outlook_running = $state.outlook_process_ids.Count -gt 0
    if ($null -ne $latest) {
        $state.backup_folder = $latest.folder
        $state.backup = [ordered]@{
            created         = $latest.manifest.created
            profiles        = @($latest.manifest.profiles)
            default_profile = $latest.manifest.default_profile
            ost_files       = @($latest.manifest.ost_renamed | ForEach-Object { $_.from })
        }
    }
    return $state
}

function Format-Names {
    param([object[]]$Names)
    if (@($Names).Count -eq 0) {
        return 'none'
    }
    return "'" + (@($Names) -join "', '") + "'"
}

function Test-NothingToReset {
    # No profile key, no DefaultProfile, no OST (or --keep-ost): Outlook starts a new profile.
    param($State, $Settings)
    return (-not $State.profiles_key) -and ($null -eq $State.default_profile) -and ($Settings.KeepOst -or $State.ost_files.Count -eq 0)
}

function Get-CheckObservation {
    param($State, $Settings)
    $running = ''
    if ($State.outlook_running) {
        $running = " Outlook is running (process $($State.outlook_process_ids -join ', '))."
    }
    if ($Settings.Mode -eq 'undo') {
        if ($null -eq $State.backup) {
            throw "There is no l1fix backup of $($State.user)'s Outlook profile to restore on this computer (nothing to undo)."
        }
        $summary = "Latest backup of $($State.user)'s Outlook profile: $($State.backup_folder) (made $($State.backup.created); profiles $(Format-Names $State.backup.profiles), $(Format-Count $State.backup.ost_files.Count 'OST file')); now: profiles $(Format-Names $State.profiles).$running"
        $ok = $false
    }
    else {
        $ok = Test-NothingToReset -State $State -Settings $Settings
        if ($ok) {
            $summary = "$($State.user) has no Outlook profile and no OST file here: Outlook creates a new profile at its next start, nothing to reset."
        }
        else {
            $default = 'none'
            if ($null -ne $State.default_profile) {
                $default = "'$($State.default_profile)'"
            }
            $summary = "$($State.user)'s Outlook: profiles $(Format-Names $State.profiles) (default $default), $(Format-Count $State.ost_files.Count 'OST file'), $(Format-Count $State.pst_files.Count 'PST file'); registry hive $($State.hive).$running"
        }
    }
    if (-not $ok -and $State.outlook_running -and -not $Settings.CloseOutlook) {
        # Not an error yet: a dry run says so; the fix refuses before it writes anything.
        $summary += " Outlook must be closed first: ask the user to close it, or run again with --close-outlook."
    }
    return [ordered]@{ ok = $ok; state = $State; summary = $summary }
}

function New-BackupFolder {
    # A new dated folder for this user; $null when it cannot be written (read-only disk, rights).
    param($UserProfile, [string]$Stamp)
    $userRoot = Join-Path $BackupRoot $UserProfile.leaf
    $folder = Join-Path $userRoot $Stamp
    $n = 1
    while (Test-Path -LiteralPath $folder) {
        $n += 1
        $folder = Join-Path $userRoot "$Stamp-$n"
    }
    New-Item -ItemType Directory -Path $folder -Force | Out-Null
    return $folder
}

function Write-Manifest {
    param([string]$Folder, $Manifest)
    [System.IO.File]::WriteAllText((Join-Path $Folder 'manifest.json'), (ConvertTo-Json -InputObject $Manifest -Depth 5), (New-Object System.Text.UTF8Encoding -ArgumentList $false))
}

function Export-Profiles {
    param([string]$Root, [string]$File)
    $export = Invoke-Native -FilePath $RegExe -Arguments @('export', "HKU\$Root\$OutlookKey\Profiles", $File, '/y')
    if ($export.exit_code -ne 0) {
        throw "reg export of the Outlook profile key failed ($($export.output))."
    }
}

function Invoke-OutlookReset {
    param($Settings)
    $userProfile = Find-UserProfile -Login $Settings.User
    $files = Get-OutlookFiles -UserProfile $userProfile
    $fix = [ordered]@{
        summary          = ''
        mode             = 'reset'
        backup_folder    = $null
        backup_error     = $null
        profiles_removed = @()
        ost_renamed      = @()
        ost_not_renamed  = @()
        pst_untouched    = @($files.pst)
        outlook_closed   = @()
    }
    if (-not $Settings.CloseOutlook) {
        Assert-OutlookClosed -UserProfile $userProfile -Close $false | Out-Null  # refuse before anything is written
    }
    $hive = Mount-UserHive -UserProfile $userProfile
    try {
        # The backup folder first: when it cannot be written, nothing is closed or removed.
        try {
            $folder = New-BackupFolder -UserProfile $userProfile -Stamp $Settings.Stamp
        }
        catch {
            $fix.backup_error = $_.Exception.Message
            $fix.summary = "Could not write the backup of $($userProfile.login)'s Outlook profile under $BackupRoot ($($fix.backup_error)): nothing was removed; free the disk or escalate."
            return $fix
        }
        $fix.outlook_closed = @(Assert-OutlookClosed -UserProfile $userProfile -Close $Settings.CloseOutlook)
        $registry = Get-OutlookRegistry -Root $hive.root
        $suffix = '.l1fix-' + (Split-Path -Leaf $folder) + '.bak'
        $renames = @()
        if (-not $Settings.KeepOst) {
            $renames = @($files.ost | ForEach-Object { [ordered]@{ from = $_; to = $_ + $suffix } })
        }
        if ($registry.profiles_key) {
            Export-Profiles -Root $hive.root -File (Join-Path $folder 'profiles.reg')
        }
        Write-Manifest -Folder $folder -Manifest ([ordered]@{
                user            = $userProfile.login
                sid             = $userProfile.sid
                created         = [DateTime]::UtcNow.ToString($TimeFormat, [Globalization.CultureInfo]::InvariantCulture)
                hive_root       = $hive.root
                profiles        = @($registry.profiles)
                default_profile = $registry.default_profile
                ost_renamed     = $renames
                pst_files       = @($files.pst)
                restored        = $null
            })
        # Backed up: now the profile goes, and the OSTs are set aside.
        $fix.backup_folder = $folder
        Remove-OutlookProfile -Root $hive.root
        $fix.profiles_removed = @($registry.profiles)
        foreach ($rename in $renames) {
            try {
                Rename-Item -LiteralPath (Join-Path $files.folder $rename.from) -NewName $rename.to
                $fix.ost_renamed += $rename.to
            }
            catch {
                $fix.ost_not_renamed += $rename.from  # in use by another program
            }
        }
    }
    finally {
        Dismount-UserHive -Hive $hive
    }
    $summary = "Removed $($userProfile.login)'s Outlook profiles $(Format-Names $fix.profiles_removed): Outlook creates a new profile at its next start"
    if ($Settings.KeepOst) {
        $summary += '; OST files kept (--keep-ost)'
    }
    else {
        $summary += "; $(Format-Count $fix.ost_renamed.Count 'OST file') renamed to *$suffix"
    }
    if ($fix.ost_not_renamed.Count -gt 0) {
        $summary += "; $(Format-Count $fix.ost_not_renamed.Count 'OST file') in use not renamed"
    }
    if ($fix.outlook_closed.Count -gt 0) {
        $summary += "; Outlook closed (process $($fix.outlook_closed -join ', '))"
    }
    $fix.summary = "$summary; $(Format-Count $fix.pst_untouched.Count 'PST file') left untouched. Backup: $folder (outlook-reset --undo restores it)."
    return $fix
}

function Import-Profiles {
    # Import profiles.reg into the hive where it is loaded now: its key paths name the hive root
    # of the export (HKEY_USERS\<SID> or HKEY_USERS\l1fix_<SID>), rewritten here.
    param([string]$Folder, [string]$FromRoot, [string]$ToRoot, [string]$Stamp)
    $text = [System.IO.File]::ReadAllText((Join-Path $Folder 'profiles.reg'))
    $text = $text.Replace("[HKEY_USERS\$FromRoot\", "[HKEY_USERS\$ToRoot\")
    $file = Join-Path $Folder "import-$Stamp.reg"
    [System.IO.File]::WriteAllText($file, $text, [System.Text.Encoding]::Unicode)
    try {
        $import = Invoke-Native -FilePath $RegExe -Arguments @('import', $file)
        if ($import.exit_code -ne 0) {
            throw "reg import of $Folder\profiles.reg failed ($($import.output))."
        }
    }
    finally {
        Remove-Item -LiteralPath $file -Force -ErrorAction SilentlyContinue
    }
}

function Invoke-OutlookUndo {
    param($Settings)
    $userProfile = Find-UserProfile -Login $Settings.User
    $latest = Get-LatestBackup -UserProfile $userProfile
    if ($null -eq $latest) {
        throw "There is no l1fix backup of $($userProfile.login)'s Outlook profile to restore on this computer (nothing to undo)."
    }
    $closed = @(Assert-OutlookClosed -UserProfile $userProfile -Close $Settings.CloseOutlook)
    $manifest = $latest.manifest
    $folder = $latest.folder
    $files = Get-OutlookFiles -UserProfile $userProfile
    $fix = [ordered]@{
        summary            = ''
        mode               = 'undo'
        backup_folder      = $folder
        recreated_profiles = @()
        recreated_saved_to = $null
        profiles_restored  = @($manifest.profiles)
        ost_restored       = @()
        ost_set_aside      = @()
        outlook_closed     = $closed
    }
    $hive = Mount-UserHive -UserProfile $userProfile
    try {
        $now = Get-OutlookRegistry -Root $hive.root
        if ($now.profiles_key) {
            # Outlook recreated a profile since the reset: keep it beside the backup, then replace it.
            $fix.recreated_saved_to = Join-Path $folder "recreated-$($Settings.Stamp).reg"
            Export-Profiles -Root $hive.root -File $fix.recreated_saved_to
            $fix.recreated_profiles = @($now.profiles)
        }
        Remove-OutlookProfile -Root $hive.root
        if (Test-Path -LiteralPath (Join-Path $folder 'profiles.reg') -PathType Leaf) {
            Import-Profiles -Folder $folder -FromRoot $manifest.hive_root -ToRoot $hive.root -Stamp $Settings.Stamp
        }
        if ($null -ne $manifest.default_profile) {
            [Microsoft.Win32.Registry]::SetValue("HKEY_USERS\$($hive.root)\$OutlookKey", 'DefaultProfile', [string]$manifest.default_profile)
        }
    }
    finally {
        Dismount-UserHive -Hive $hive
    }
    foreach ($rename in @($manifest.ost_renamed)) {
        $saved = Join-Path $files.folder $rename.to
        if (-not (Test-Path -LiteralPath $saved -PathType Leaf)) {
            continue
        }
        $original = Join-Path $files.folder $rename.from
        if (Test-Path -LiteralPath $original) {
            $aside = "$($rename.from).l1fix-$($Settings.Stamp).bak"
            Rename-Item -LiteralPath $original -NewName $aside
            $fix.ost_set_aside += $aside
        }
        Rename-Item -LiteralPath $saved -NewName $rename.from
        $fix.ost_restored += $rename.from
    }
    $manifest.restored = [DateTime]::UtcNow.ToString($TimeFormat, [Globalization.CultureInfo]::InvariantCulture)
    Write-Manifest -Folder $folder -Manifest $manifest
    $summary = "Restored $($userProfile.login)'s Outlook profiles $(Format-Names $fix.profiles_restored) and $(Format-Count $fix.ost_restored.Count 'OST file') from $folder"
    if ($null -ne $fix.recreated_saved_to) {
        $summary += "; the profiles Outlook had recreated since ($(Format-Names $fix.recreated_profiles)) were replaced, saved to $($fix.recreated_saved_to)"
    }
    if ($fix.ost_set_aside.Count -gt 0) {
        $summary += "; OST files recreated since renamed aside: $($fix.ost_set_aside -join ', ')"
    }
    $fix.summary = "$summary."
    return $fix
}

function Get-VerifyObservation {
    param($State, $Settings)
    if ($Settings.Mode -eq 'undo') {
        $backup = $Settings.Backup
        $missing = @($backup.ost_files | Where-Object { $State.ost_files -notcontains $_ })
        $profilesBack = ((@($State.profiles) | Sort-Object) -join '|') -eq ((@($backup.profiles) | Sort-Object) -join '|')
        $ok = $profilesBack -and ($State.default_profile -eq $backup.default_profile) -and ($missing.Count -eq 0)
        if ($ok) {
            $summary = "$($State.user)'s Outlook profiles $(Format-Names $State.profiles) and $(Format-Count $backup.ost_files.Count 'OST file') are back."
        }
        else {
            $summary = "$($State.user)'s Outlook profile is not as backed up: profiles $(Format-Names $State.profiles) (expected $(Format-Names $backup.profiles)), missing OST files: $(Format-Names $missing)."
        }
        return [ordered]@{ ok = $ok; state = $State; summary = $summary }
    }
    $pstBefore = @($Settings.PstBefore)
    $State['pst_untouched'] = ((@($State.pst_files) | Sort-Object) -join '|') -eq ((@($pstBefore) | Sort-Object) -join '|')
    $ok = (Test-NothingToReset -State $State -Settings $Settings) -and ($null -ne $State.backup_folder)
    if ($ok) {
        $summary = "$($State.user) has no Outlook profile left: Outlook creates a new one at its next start; backup in $($State.backup_folder); $(Format-Count $State.pst_files.Count 'PST file') untouched."
    }
    else {
        $summary = "$($State.user)'s Outlook profile is still there: profiles $(Format-Names $State.profiles), $(Format-Count $State.ost_files.Count 'OST file')."
    }
    return [ordered]@{ ok = $ok; state = $State; summary = $summary }
}

Invoke-L1fixSteps -EncodedRequest $Request -Prepare {
    param($Request)
    $user = Get-RequiredParam -Request $Request -Name 'user' -What 'the login whose Outlook profile to reset'
    $mode = 'reset'
    if ([bool](Get-Param -Request $Request -Name 'undo' -Default $false)) {
        $mode = 'undo'
    }
    $backup = $null
    $pstBefore = @()
    if ($null -ne $Request.before) {
        $backup = $Request.before.backup
        $pstBefore = @($Request.before.pst_files)
    }
    # A hashtable: the check of this run records here what the verify compares with.
    @{
        User         = $user
        Mode         = $mode
        KeepOst      = [bool](Get-Param -Request $Request -Name 'keep-ost' -Default $false)
        CloseOutlook = [bool](Get-Param -Request $Request -Name 'close-outlook' -Default $false)
        Stamp        = [DateTime]::UtcNow.ToString("yyyyMMdd'T'HHmmss'Z'", [Globalization.CultureInfo]::InvariantCulture)
        Backup       = $backup
        PstBefore    = $pstBefore
    }
} -Check {
    param($Settings)
    $state = Get-OutlookState -Settings $Settings
    $Settings.Backup = $state.backup
    $Settings.PstBefore = @($state.pst_files)
    Get-CheckObservation -State $state -Settings $Settings
} -Fix {
    param($Settings)
    if ($Settings.Mode -eq 'undo') {
        Invoke-OutlookUndo -Settings $Settings
    }
    else {
        Invoke-OutlookReset -Settings $Settings
    }
} -Verify {
    param($Settings)
    Get-VerifyObservation -State (Get-OutlookState -Settings $Settings) -Settings $Settings
}
