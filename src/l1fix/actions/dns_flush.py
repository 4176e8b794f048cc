"""dns-flush: empty the DNS client cache of a PC (Clear-DnsClientCache) and verify it."""

from __future__ import annotations

from l1fix.action import Risk, ScriptAction


class DnsFlush(ScriptAction):
    """Report the DNS client cache and the Dnscache service; flush the cache; verify it emptied.

    A flush is asked for on purpose, so check is "ok" only when the cache is already empty.
    A stopped DNS Client is reported, not started: `service-restart --service Dnscache`.
    """

    name = "dns-flush"
    summary = "Flush the DNS client cache (Clear-DnsClientCache), verify it emptied and Dnscache runs"
    risk = Risk.SAFE
    script = "dns_flush"
