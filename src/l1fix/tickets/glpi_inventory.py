"""Computers l1fix does not know locally, looked up in GLPI's inventory, with a short cache."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from l1fix.config import Config

CACHE_FILE = "glpi-computers.json"


def computer_address(config: Config, name: str) -> str | None:
    """The address (FQDN first, else IP) GLPI's network ports give for computer `name`, or None."""
    cache_path = config.home / "cache" / CACHE_FILE
    cache = _read(cache_path)
    key = name.lower()
    entry = cache.get(key)
    if entry and time.time() - entry["at"] < config.glpi.inventory_cache_s:
        return entry["address"]
    from l1fix.tickets.delivery import open_ticket_system

    with open_ticket_system(config) as system:
        addresses = system.find_computer(name)
    if not addresses:
        return None
    cache[key] = {"address": addresses[0], "at": time.time()}
    _write(cache_path, cache)
    return addresses[0]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write(path: Path, cache: dict) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache))
    os.replace(tmp, path)
