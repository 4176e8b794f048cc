<#
    l1fix temp-clean - Windows PowerShell 5.1.

    check  : the temporary folders: AppData\Local\Temp of every user profile (Win32_UserProfile,
             special profiles left out) or of params.user only (an error when that user has no
             profile here), and C:\Windows\Temp. Their files, walked without ever entering a
             reparse point (junction, symbolic link: counted as skipped), and those not written
             for params.older-than-days days. Free space of the system drive.
             ok = no file older than that.
    fix    : delete those files. A file in use (locked) or denied is counted, never fatal.
             Folders are left in place.
    verify : ok = no old file left but those found in use by the fix, and at least one file
             deleted (every old file in use fails). Run on its own: ok = no old file left.

    Input : -Request = base64 of UTF-8 JSON {action, steps, params, before}.
            Optional params: user (user or DOMAIN\user), older-than-days (default 1).
    Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.
    The login is data only: it is compared with the profiles' account names, never made part of
    code, of a path or of a command line.

    From _common.ps1 (sent ahead of this script, which also sets $ErrorActionPreference = 'Stop'):
    Invoke-L1fixSteps (decodes the input, runs the steps, writes the JSON), Get-Param, Format-Count.
#>
param([Parameter(Mandatory = $true)][string]$Request)

function Get-ProfileAccount {
    # DOMAIN\user of a profile's SID, or $null for an account that no longer resolves.
    param([string]$Sid)
    try {
        $identifier = New-Object System.Security.Principal.SecurityIdentifier -ArgumentList $Sid
        return $identifier.Translate([System.Security.Principal.NTAccount]).Value
    }
    catch {
        return $null
    }
}

function Get-TempFolders {
    # [ordered]@{ path; user } for each Temp folder to clean.
    param([string]$User)
    $profiles = @()
    foreach ($userProfile in @(Get-CimInstance -ClassName Win32_UserProfile | Where-Object { -not $_.Special })) {
        $account = Get-ProfileAccount -Sid ([string]$userProfile.SID)
        $leaf = Split-Path -Leaf ([string]$userProfile.LocalPath)
        if ($null -eq $account) {
            $account = $leaf
        }
        $profiles += [ordered]@{ user = $account; leaf = $leaf; path = [string]$userProfile.LocalPath }
    }
    if ($User -ne '') {
        if ($User.Contains('\')) {
            $profiles = @($profiles | Where-Object { $_.user -eq $User })
        }
        else {
            $profiles = @($profiles | Where-Object { (($_.user -split '\\', 2)[-1] -eq $User) -or ($_.leaf -eq $User) })
        }
        if ($profiles.Count -eq 0) {
            throw "User '$User' has no profile on this computer: nothing of theirs to clean (check the login, or clean without --user)."
        }
    }
    $folders = @($profiles | ForEach-Object {
            [ordered]@{ path = Join-Path $_.path 'AppData\Local\Temp'; user = $_.user }
        })
    $folders += [ordered]@{ path = Join-Path $env:SystemRoot 'Temp'; user = $null }
    return $folders
}

function Get-OldFiles {
    # Walk a folder without entering reparse points. Returns the folder's counts and its old files.
    param([string]$Path, [DateTime]$Cutoff)
    $found = [ordered]@{ files = 0; old = @(); old_bytes = [int64]0; reparse_points = 0 }
    if (-not (Test-Path -LiteralPath $Path -PathType Container)) {
        return $found
    }
    $pending = New-Object System.Collections.Generic.Stack[System.IO.DirectoryInfo]
    $pending.Push((New-Object System.IO.DirectoryInfo -ArgumentList $Path))
    while ($pending.Count -gt 0) {
        $directory = $pending.Pop()
        try {
            $items = @($directory.EnumerateFileSystemInfos())
        }
        catch {
            continue  # a folder we may not list: nothing in it is deleted
        }
        foreach ($item in $items) {
            if ($item.Attributes -band [System.IO.FileAttributes]::ReparsePoint) {
                $found.reparse_points += 1  # junction or link: never followed, never deleted
            }
            elseif ($item -is [System.IO.DirectoryInfo]) {
                $pending.Push($item)
            }
            else {
                $found.files += 1
                if ($item.LastWriteTimeUtc -lt $Cutoff) {
                    $found.old += $item
                    $found.old_bytes += $item.Length
                }
            }
        }
    }
    return $found
}

function Get-FreeBytes {
    $drive = New-Object System.IO.DriveInfo -ArgumentList $env:SystemDrive
    return [int64]$drive.AvailableFreeSpace
}

function Get-TempState {
    param($Settings)
    $cutoff = [DateTime]::UtcNow.AddDays(-$Settings.Days)
    $state = [ordered]@{
        older_than_days        = $Settings.Days
        user                   = $null
        folders                = @()
        files                  = 0
        old_files              = 0
        old_bytes              = [int64]0
        reparse_points_skipped = 0
        drive                  = $env:SystemDrive
        free_bytes             = Get-FreeBytes
    }
    if ($Settings.User -ne '') {
        $state.user = $Settings.User
    }
    $oldFiles = @()
    foreach ($folder in @(Get-TempFolders -User $Settings.User)) {
        $found = Get-OldFiles -Path $folder.path -Cutoff $cutoff
        $state.folders += [ordered]@{
            path                   = $folder.path
            user                   = $folder.user
            files                  = $found.files
            old_files              = $found.old.Count
            old_bytes              = $found.old_bytes
            reparse_points_skipped = $found.reparse_points
        }
        $state.files += $found.files
        $state.old_files += $found.old.Count
        $state.old_bytes += $found.old_bytes
        $state.reparse_points_skipped += $found.reparse_points
        $oldFiles += $found.old
    }
    $Settings.OldFiles = $oldFiles
    return $state
}

function Format-Bytes {
    param([int64]$Bytes)
    $culture = [Globalization.CultureInfo]::InvariantCulture
    $units = [ordered]@{ GB = 1073741824; MB = 1048576; KB = 1024 }
    foreach ($unit in $units.Keys) {
        if ($Bytes -ge $units[$unit]) {
            return [string]::Format($culture, '{0:N1} {1}', ($Bytes / $units[$unit]), $unit)
        }
    }
    return "$Bytes bytes"
}

function Get-CheckObservation {
    param($State)
    $ok = $State.old_files -eq 0
    $where = "$(Format-Count $State.folders.Count 'Temp folder')"
    if ($ok) {
        $summary = "No temporary file older than $(Format-Count $State.older_than_days 'day') in $where ($(Format-Bytes $State.free_bytes) free on $($State.drive))."
    }
    else {
        $summary = "$(Format-Count $State.old_files 'temporary file') older than $(Format-Count $State.older_than_days 'day') ($(Format-Bytes $State.old_bytes)) in $where; $(Format-Bytes $State.free_bytes) free on $($State.drive)."
    }
    return [ordered]@{ ok = $ok; state = $State; summary = $summary }
}

function Invoke-TempClean {
    param($Settings)
    $null = Get-TempState -Settings $Settings
    $fix = [ordered]@{
        summary           = ''
        files_deleted     = 0
        bytes_freed       = [int64]0
        files_in_use      = 0
        files_not_deleted = 0
        free_bytes_before = Get-FreeBytes
        free_bytes_after  = $null
    }
    foreach ($file in @($Settings.OldFiles)) {
        try {
            $length = $file.Length
            $file.Refresh()
            if ($file.IsReadOnly) {
                $file.IsReadOnly = $false
            }
            $file.Delete()
            $fix['files_deleted'] += 1
            $fix['bytes_freed'] += $length
        }
        catch {
            # PowerShell wraps what a .NET method throws: look for the IOException inside.
            $reason = $_.Exception
            while ($null -ne $reason.InnerException -and -not ($reason -is [System.IO.IOException])) {
                $reason = $reason.InnerException
            }
            if ($reason -is [System.IO.IOException]) {
                $fix['files_in_use'] += 1  # opened by a running program: counted, left alone
            }
            else {
                $fix['files_not_deleted'] += 1  # access denied and the like
            }
        }
    }
    $fix.free_bytes_after = Get-FreeBytes
    $Settings.FilesInUse = $fix.files_in_use
    $Settings.FilesDeleted = $fix.files_deleted
    $summary = "Deleted $(Format-Count $fix.files_deleted 'file') ($(Format-Bytes $fix.bytes_freed) freed); free space $(Format-Bytes $fix.free_bytes_before) -> $(Format-Bytes $fix.free_bytes_after)."
    if ($fix.files_in_use -gt 0) {
        $summary += " $(Format-Count $fix.files_in_use 'file') in use left alone."
    }
    if ($fix.files_not_deleted -gt 0) {
        $summary += " $(Format-Count $fix.files_not_deleted 'file') could not be deleted (access denied)."
    }
    $fix.summary = $summary
    return $fix
}

function Get-VerifyObservation {
    param($State, $Settings)
    $inUse = 0
    if ($null -ne $Settings.FilesDeleted) {
        $inUse = $Settings.FilesInUse
    }
    $State['files_in_use'] = $inUse
    $ok = ($State.old_files -le $inUse) -and (($State.old_files -eq 0) -or ($Settings.FilesDeleted -gt 0))
    if ($State.old_files -eq 0) {
        $summary = "No temporary file older than $(Format-Count $State.older_than_days 'day') is left; $(Format-Bytes $State.free_bytes) free on $($State.drive)."
    }
    elseif ($ok) {
        $summary = "Only $(Format-Count $State.old_files 'file') in use is left; $(Format-Bytes $State.free_bytes) free on $($State.drive)."
    }
    elseif ($State.old_files -le $inUse) {
        $summary = "Nothing was deleted: every old temporary file ($($State.old_files)) is in use; ask the user to close their programs or restart, then run again."
    }
    else {
        $summary = "$(Format-Count $State.old_files 'temporary file') older than $(Format-Count $State.older_than_days 'day') still there ($(Format-Bytes $State.old_bytes))."
    }
    return [ordered]@{ ok = $ok; state = $State; summary = $summary }
}

Invoke-L1fixSteps -EncodedRequest $Request -Prepare {
    param($Request)
    $days = [int](Get-Param -Request $Request -Name 'older-than-days' -Default 1)
    if ($days -lt 0) {
        throw "The parameter 'older-than-days' must be 0 or more (got $days)."
    }
    # A hashtable: the check and the fix of this run record here what the next step needs.
    @{
        User         = [string](Get-Param -Request $Request -Name 'user' -Default '')
        Days         = $days
        OldFiles     = @()
        FilesInUse   = 0
        FilesDeleted = $null
    }
} -Check {
    param($Settings)
    Get-CheckObservation -State (Get-TempState -Settings $Settings)
} -Fix {
    param($Settings)
    Invoke-TempClean -Settings $Settings
} -Verify {
    param($Settings)
    Get-VerifyObservation -State (Get-TempState -Settings $Settings) -Settings $Settings
}
