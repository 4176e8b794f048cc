<#
    l1fix dns-flush - Windows PowerShell 5.1.

    check  : the DNS Client service (Dnscache) status and start type, and the entries of the DNS
             client cache (Get-DnsClientCache). Names listed in the hosts file are counted apart:
             Windows loads them into the cache again right after every flush.
             A flush is asked for on purpose: ok only when Dnscache runs and the cache holds no
             entry besides the hosts file ones.
    fix    : Clear-DnsClientCache. A DNS Client that is not running has no cache to flush: it is
             reported, not started (service-restart --service Dnscache does that).
    verify : ok = Dnscache Running and the cache emptied: no entry left, or fewer entries than
             before the flush (the ones the PC looked up again since).

    Input : -Request = base64 of UTF-8 JSON {action, steps, params, before}. No params.
            before.cache_entries (a check's state) is the count to compare with when verify runs
            on its own.
    Output: exactly one JSON document, a key per step run; {"error": "..."} and exit 1 on error.

    From _common.ps1 (sent ahead of this script, which also sets $ErrorActionPreference = 'Stop'):
    Invoke-L1fixSteps (decodes the input, runs the steps, writes the JSON), Get-ServiceByName,
    Get-ServiceState, Format-Count.
#>
param([Parameter(Mandatory = $true)][string]$Request)

$DnsServiceName = 'Dnscache'

function Get-HostsFileNames {
    # The names the hosts file maps: the DNS Client preloads them into its cache.
    $path = Join-Path $env:SystemRoot 'System32\drivers\etc\hosts'
    $names = @{}
    if (Test-Path -LiteralPath $path -PathType Leaf) {
        foreach ($line in @(Get-Content -LiteralPath $path -ErrorAction SilentlyContinue)) {
            $text = ([string]$line -replace '#.*$', '').Trim()
            $fields = @($text -split '\s+' | Where-Object { $_ -ne '' })
            for ($i = 1; $i -lt $fields.Count; $i++) {
                $names[$fields[$i].ToLowerInvariant()] = $true
            }
        }
    }
    return $names
}

function Get-DnsState {
    $service = Get-ServiceByName -Name $DnsServiceName
    if ($null -eq $service) {
        throw 'The DNS Client service (Dnscache) is not installed on this computer.'
    }
    $service.Refresh()
    $names = @()
    if ([string]$service.Status -eq 'Running') {
        $names = @(Get-DnsClientCache | ForEach-Object { ([string]$_.Entry).ToLowerInvariant() } | Sort-Object -Unique)
    }
    $hostsNames = Get-HostsFileNames
    $cached = @($names | Where-Object { -not $hostsNames.ContainsKey($_) })
    return [ordered]@{
        service           = $DnsServiceName
        status            = [string]$service.Status
        start_type        = [string]$service.StartType
        cache_entries     = $cached.Count
        hosts_file_entries = $names.Count - $cached.Count
        sample_entries    = @($cached | Select-Object -First 10)
    }
}

function Get-CheckObservation {
    param($State)
    $ok = ($State.status -eq 'Running') -and ($State.cache_entries -eq 0)
    if ($State.status -ne 'Running') {
        $summary = "The DNS Client (Dnscache) is $($State.status) (start type $($State.start_type)): there is no cache to flush; restart it with service-restart --service Dnscache or escalate."
    }
    elseif ($ok) {
        $summary = 'The DNS client cache is already empty and the DNS Client is running.'
    }
    else {
        $summary = "The DNS client cache holds $(Format-Count $State.cache_entries 'name')."
    }
    return [ordered]@{ ok = $ok; state = $State; summary = $summary }
}

function Invoke-DnsFlush {
    param($Settings)
    $state = Get-DnsState
    $fix = [ordered]@{
        summary       = ''
        flushed       = $false
        entries_before = $state.cache_entries
        flush_error   = $null
    }
    if ($null -eq $Settings.EntriesBefore) {
        $Settings.EntriesBefore = $state.cache_entries
    }
    if ($state.status -ne 'Running') {
        $fix.summary = "The DNS Client (Dnscache) is $($state.status): nothing to flush, nothing was changed."
        return $fix
    }
    try {
        Clear-DnsClientCache
        $fix.flushed = $true
        $fix.summary = "Flushed the DNS client cache ($(Format-Count $state.cache_entries 'name'))."
    }
    catch {
        $fix.flush_error = $_.Exception.Message
        $fix.summary = "Clear-DnsClientCache failed: $($fix.flush_error)"
    }
    return $fix
}

function Get-VerifyObservation {
    param($State, $Before)
    $State['entries_before'] = $Before
    $fewer = ($null -ne $Before) -and ($State.cache_entries -lt [int]$Before)
    $ok = ($State.status -eq 'Running') -and (($State.cache_entries -eq 0) -or $fewer)
    if ($State.status -ne 'Running') {
        $summary = "The DNS Client (Dnscache) is still not running ($($State.status), start type $($State.start_type))."
    }
    elseif ($State.cache_entries -eq 0) {
        $summary = 'The DNS client cache is empty and the DNS Client is running.'
    }
    elseif ($ok) {
        $summary = "The DNS client cache was emptied: $(Format-Count $State.cache_entries 'name') looked up again since, $Before before."
    }
    else {
        $summary = "The DNS client cache was not emptied: $(Format-Count $State.cache_entries 'name') (before: $Before)."
    }
    return [ordered]@{ ok = $ok; state = $State; summary = $summary }
}

Invoke-L1fixSteps -EncodedRequest $Request -Prepare {
    param($Request)
    $before = $null
    if ($null -ne $Request.before -and $null -ne $Request.before.PSObject.Properties['cache_entries']) {
        $before = [int]$Request.before.cache_entries
    }
    # A hashtable: the check and the fix of this run record here the count the verify compares with.
    @{ EntriesBefore = $before }
} -Check {
    param($Settings)
    $state = Get-DnsState
    $Settings.EntriesBefore = $state.cache_entries
    Get-CheckObservation -State $state
} -Fix {
    param($Settings)
    Invoke-DnsFlush -Settings $Settings
} -Verify {
    param($Settings)
    Get-VerifyObservation -State (Get-DnsState) -Before $Settings.EntriesBefore
}
