"""Lab WS-Management (WinRM) endpoint: the real protocol on loopback, simulated Windows hosts behind it.

Every simulated host gets its own loopback IP with an HTTPS and an HTTP listener (same port numbers on
every IP).  Clients authenticate with NTLM (pyspnego's acceptor) or, on HTTPS only, Basic; on HTTP every
SOAP message must be sealed with the NTLM session key (MS-WSMV 2.2.9.1.1), as Windows insists with its
default ``AllowUnencrypted=false``.  The WinRS actions Create/Command/Send/Receive/Signal/Delete are
implemented the way pywinrm expects them; what a command *does* is up to the :class:`Simulator`.

``GET /stats`` on any listener returns :meth:`WSManLab.stats` as JSON, ``POST /stats/reset`` resets it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import ipaddress
import json
import logging
import os
import re
import selectors
import socket
import socketserver
import ssl
import struct
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

import spnego
from spnego.channel_bindings import GssChannelBindings
from spnego.exceptions import BadBindingsError, SpnegoError

from l1fix.lab import tls

log = logging.getLogger(__name__)

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
}
TRANSFER = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/"
CMD_RESOURCE = SHELL + "cmd"
WSMAN_FAULT = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"
ADDRESSING_FAULT = "http://schemas.xmlsoap.org/ws/2004/08/addressing/fault"
FAULT_DETAIL = "http://schemas.dmtf.org/wbem/wsman/1/wsman/faultDetail/"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
ACTIONS = ("Create", "Command", "Send", "Receive", "Signal", "Delete")

ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
ENCRYPTED_CONTENT_TYPE = f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"'
SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"
BOUNDARY = b"--Encrypted Boundary"
OCTET_STREAM = b"\tContent-Type: application/octet-stream\r\n"

MAX_REQUEST_ENVELOPE = 500 * 1024  # Windows' MaxEnvelopeSizekb default; bigger requests get HTTP 413
MAX_HTTP_BODY = 4 * MAX_REQUEST_ENVELOPE  # never read more than this from a socket
DEFAULT_MAX_ENVELOPE = 153600  # response size limit when the request does not give w:MaxEnvelopeSize
MAX_OPERATION_TIMEOUT_S = 60.0  # Windows' MaxTimeoutms default
SLOW_DELAY_S = 2.0
IDLE_TIMEOUT_S = 120.0
HANDSHAKE_TIMEOUT_S = 10.0
STATUS_CONTROL_C_EXIT = 0xC000013A
Headers = list[tuple[str, str]] | None
BANNER = b"l1fix lab - simulated Windows hosts (WS-Management at /wsman). This is a simulation.\n"


@dataclass
class CommandOutcome:
    """What a simulated command produced.  ``exit_code`` is reported as a Windows DWORD (-1 -> 4294967295)."""

    stdout: bytes
    stderr: bytes = b""
    exit_code: int = 0
    duration_s: float = 0.0  # simulated run time: Receive does not report Done before this has elapsed


class Simulator(Protocol):
    """Decides what the simulated hosts are and what their commands do."""

    def run_command(self, host: str, command: str, arguments: list[str], stdin: bytes) -> CommandOutcome: ...

    def host_names(self) -> list[str]: ...

    def fault(self, host: str) -> str | None: ...  # None, "unreachable", "access-denied", "slow"


# --------------------------------------------------------------------------- SOAP faults


class _Fault(Exception):
    """A WS-Management SOAP fault, shaped like the ones Windows sends."""

    def __init__(
        self,
        wsman_code: int,
        subcode: str,
        reason: str,
        message: str | None = None,
        *,
        code: str = "s:Sender",
        detail: str | None = None,
        action: str = WSMAN_FAULT,
    ) -> None:
        super().__init__(reason)
        self.wsman_code = wsman_code
        self.subcode = subcode
        self.reason = reason
        self.message = message or reason
        self.code = code
        self.detail = detail
        self.action = action


def _timeout_fault() -> _Fault:
    text = "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.  "
    return _Fault(2150858793, "w:TimedOut", text, code="s:Receiver")


def _shell_not_found(shell_id: str) -> _Fault:
    return _Fault(
        2150858843,
        "w:InvalidSelectors",
        "The WS-Management service cannot process the request because the request contained invalid selectors "
        "for the resource. ",
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the shell was not found "
        "on the server. Possible causes are: the specified ShellId is incorrect or the shell no longer exists on "
        "the server. Provide the correct ShellId or create a new shell and retry the operation. ",
        detail=FAULT_DETAIL + "UnexpectedSelectors",
    )


def _access_denied() -> _Fault:
    return _Fault(5, "w:AccessDenied", "Access is denied. ")


def _invalid_parameter(message: str) -> _Fault:
    # Approximation: the exact fault Windows sends for these protocol misuses was not verified.
    return _Fault(
        2150858810,
        "w:InvalidParameter",
        "The WS-Management service cannot process the request because a parameter for the operation is not valid. ",
        message,
    )


def _command_terminated(command_id: str) -> _Fault:
    # ERROR_WSMAN_COMMAND_TERMINATED; the wording is the lab's own.
    return _Fault(
        2150859212,
        "w:InvalidParameter",
        "The WS-Management service cannot process the request because the command was terminated. ",
        f"The command with CommandId {command_id} was terminated or does not exist.",
    )


def _invalid_resource(resource: str) -> _Fault:
    return _Fault(
        2150858811,
        "w:InvalidResourceURI",
        "The WS-Management service cannot process the request. The resource URI is missing or it has an incorrect "
        "format. ",
        f"The lab simulates only the cmd shell ({CMD_RESOURCE}), not {resource or 'an empty resource URI'}.",
    )


def _action_not_supported(action: str) -> _Fault:
    return _Fault(
        2150858771,
        "a:ActionNotSupported",
        "The WS-Management service does not support the specified action. ",
        f"The action {action} is not supported by this WS-Management service.",
        action=ADDRESSING_FAULT,
    )


def _missing_header() -> _Fault:
    return _Fault(
        2150858769,
        "a:MessageInformationHeaderRequired",
        "The WS-Management service cannot process the request. The request does not have all the expected SOAP "
        "headers. ",
        action=ADDRESSING_FAULT,
    )


def _invalid_xml() -> _Fault:
    reason = "The WS-Management service cannot process the request because the XML is invalid. "
    return _Fault(2150858819, "w:SchemaValidationError", reason)


# --------------------------------------------------------------------------- envelopes

_ENVELOPE_OPEN = (
    '<s:Envelope xml:lang="en-US"'
    + "".join(f' xmlns:{prefix}="{uri}"' for prefix, uri in NS.items() if prefix != "f")
    + ">"
)


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    """A response envelope with the WS-Addressing headers Windows puts on every answer."""
    header = (
        f"<s:Header><a:Action>{escape(action)}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        f"<a:To>{ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header>"
    )
    return f"{_ENVELOPE_OPEN}{header}<s:Body>{body}</s:Body></s:Envelope>".encode()


def _fault_envelope(fault: _Fault, relates_to: str, machine: str) -> bytes:
    detail = f"<w:FaultDetail>{fault.detail}</w:FaultDetail>" if fault.detail else ""
    body = (
        f"<s:Fault><s:Code><s:Value>{fault.code}</s:Value>"
        f"<s:Subcode><s:Value>{fault.subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text></s:Reason>'
        f"<s:Detail>{detail}"
        f'<f:WSManFault xmlns:f="{NS["f"]}" Code="{fault.wsman_code}" Machine={quoteattr(machine)}>'
        f"<f:Message>{escape(fault.message)}</f:Message></f:WSManFault></s:Detail></s:Fault>"
    )
    return _envelope(fault.action, relates_to, body)


def _parse_duration(text: str | None, default: float) -> float:
    """Seconds in an xs:duration such as PT20S, PT20.000S or PT1M30S."""
    match = re.fullmatch(r"\s*P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d*)?)S)?)?\s*", text or "")
    if not text or not match:
        return default
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _split_arguments(text: str) -> list[str]:
    """pywinrm joins arguments with spaces; split them back on whitespace."""
    return [a for a in re.split(r"[ \t\r\n]+", text) if a]


# --------------------------------------------------------------------------- shells and commands


@dataclass
class _Command:
    id: str
    command: str
    arguments: list[str]
    stdin: bytearray = field(default_factory=bytearray)
    stdin_closed: bool = False
    started_at: float | None = None  # monotonic time stdin was closed
    outcome: CommandOutcome | None = None
    done_at: float | None = None  # monotonic time the simulated run is over
    terminated: bool = False
    sent: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})
    cond: threading.Condition = field(default_factory=threading.Condition)


@dataclass
class _Shell:
    id: str
    host: str
    owner: str
    codepage: int
    options: dict[str, str]
    commands: dict[str, _Command] = field(default_factory=dict)


@dataclass
class _Request:
    """One parsed WS-Man request."""

    host: str
    user: str
    action: str
    message_id: str
    header: ET.Element
    body: ET.Element

    def header_text(self, path: str, default: str = "") -> str:
        return (self.header.findtext(path, default, NS) or default).strip()

    @property
    def shell_id(self) -> str:
        for selector in self.header.findall("w:SelectorSet/w:Selector", NS):
            if selector.get("Name") == "ShellId":
                return (selector.text or "").strip()
        return ""

    @property
    def options(self) -> dict[str, str]:
        return {o.get("Name", ""): (o.text or "").strip() for o in self.header.findall("w:OptionSet/w:Option", NS)}

    @property
    def operation_timeout(self) -> float:
        seconds = _parse_duration(self.header_text("w:OperationTimeout"), MAX_OPERATION_TIMEOUT_S)
        return min(seconds, MAX_OPERATION_TIMEOUT_S)

    @property
    def max_envelope(self) -> int:
        try:
            return int(self.header_text("w:MaxEnvelopeSize", str(DEFAULT_MAX_ENVELOPE)))
        except ValueError:
            return DEFAULT_MAX_ENVELOPE


# --------------------------------------------------------------------------- the lab


class WSManLab:
    """A set of simulated Windows hosts speaking WS-Management on loopback addresses."""

    def __init__(
        self,
        simulator: Simulator,
        *,
        users: dict[str, str],
        port: int = 0,
        http_port: int = 0,
        cert_dir: Path,
        latency_ms: float = 0.0,
        first_ip: str = "127.0.10.1",
    ) -> None:
        first = ipaddress.ip_address(first_ip)
        if not isinstance(first, ipaddress.IPv4Address) or not first.is_loopback or not 1 <= int(first) % 256 <= 254:
            raise ValueError(f"first_ip must be an IPv4 loopback address ending in .1-.254, not {first_ip}")
        for name, password in users.items():
            if any(c in name + password for c in ":\r\n"):
                raise ValueError("lab user names and passwords cannot contain ':' or line breaks")
        self.simulator = simulator
        self.users = dict(users)
        self.port = port
        self.http_port = http_port
        self._requested_ports = (port, http_port)
        self.cert_dir = Path(cert_dir)
        self.ca_path = self.cert_dir / tls.CA_NAME
        self.latency_ms = latency_ms
        self.first_ip = first_ip
        self._lock = threading.Lock()
        self._shells: dict[str, dict[str, _Shell]] = {}
        self._addresses: dict[str, str] | None = None
        self._servers: list[_HostServer] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._accept_thread: threading.Thread | None = None
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self._previous_user_file: str | None = None
        self._user_file = self.cert_dir / "ntlm-users"
        self._tls_context: ssl.SSLContext | None = None
        self._channel_bindings: GssChannelBindings | None = None
        self._handlers: dict[str, Callable[[_Request], tuple[str, str]]] = {
            TRANSFER + "Create": self._create,
            SHELL + "Command": self._command,
            SHELL + "Send": self._send,
            SHELL + "Receive": self._receive,
            SHELL + "Signal": self._signal,
            TRANSFER + "Delete": self._delete,
        }
        self.reset_stats()

    # ----------------------------------------------------------------- public API

    def __enter__(self) -> WSManLab:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def address_of(self, host: str) -> str:
        """Loopback IP of a simulated host."""
        addresses = self._addresses if self._addresses is not None else self._compute_addresses()
        try:
            return addresses[host]
        except KeyError:
            raise KeyError(f"unknown lab host {host!r}") from None

    def start(self) -> None:
        """Bind every host's HTTPS and HTTP listener and serve in background threads."""
        if self._accept_thread is not None:
            raise RuntimeError("lab already started")
        self._stopping.clear()
        self._shells.clear()  # like a reboot: shells do not survive a restart
        self._addresses = self._compute_addresses()
        certs = tls.ensure_certificates(self.cert_dir, list(self._addresses), list(self._addresses.values()))
        self._tls_context = tls.server_context(certs)
        self._channel_bindings = GssChannelBindings(
            application_data=b"tls-server-end-point:" + tls.end_point_hash(certs.cert_path)
        )
        self._write_user_file()
        reachable = [(h, ip) for h, ip in self._addresses.items() if self.simulator.fault(h) != "unreachable"]
        try:
            self.port, https = self._bind(reachable, self._requested_ports[0], self._tls_context)
            self._servers = https
            self.http_port, http = self._bind(reachable, self._requested_ports[1], None)
            self._servers += http
        except BaseException:
            self._close_servers()
            self._restore_user_file()
            raise
        self._wakeup = socket.socketpair()
        self._accept_thread = threading.Thread(target=self._accept_loop, name="wsman-lab-accept", daemon=True)
        self._accept_thread.start()

    def stop(self) -> None:
        """Stop listening, drop open connections and wake blocked Receives."""
        if self._accept_thread is None:
            return
        self._stopping.set()
        assert self._wakeup is not None
        self._wakeup[1].send(b"x")
        self._accept_thread.join()
        self._accept_thread = None
        for sock in self._wakeup:
            sock.close()
        self._wakeup = None
        self._close_servers()
        with self._lock:
            connections = list(self._connections)
            commands = [c for shells in self._shells.values() for s in shells.values() for c in s.commands.values()]
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for cmd in commands:
            with cmd.cond:
                cmd.cond.notify_all()
        self._restore_user_file()

    def stats(self) -> dict[str, Any]:
        """Counters: SOAP requests (total, by action, by host), NTLM handshakes, HTTP requests."""
        with self._lock:
            return json.loads(json.dumps(self._stats))

    def reset_stats(self) -> None:
        with self._lock:
            self._stats: dict[str, Any] = {
                "requests": 0,
                "by_action": dict.fromkeys(ACTIONS, 0),
                "auth_handshakes": 0,
                "http_requests": 0,
                "by_host": {},
            }

    # ----------------------------------------------------------------- setup helpers

    def _compute_addresses(self) -> dict[str, str]:
        """Host name -> IP: first_ip, first_ip + 1, ..., .254 rolling over into the next /24 at .1."""
        first = int(ipaddress.IPv4Address(self.first_ip))
        base, offset = first - first % 256, first % 256 - 1
        addresses = {}
        for i, host in enumerate(self.simulator.host_names()):
            slot = offset + i
            ip = ipaddress.IPv4Address(base + (slot // 254) * 256 + slot % 254 + 1)
            if not ip.is_loopback:
                raise ValueError(f"too many hosts: {host} would get {ip}, outside the loopback range")
            addresses[host] = str(ip)
        return addresses

    def _bind(
        self, hosts: list[tuple[str, str]], port: int, tls_context: ssl.SSLContext | None
    ) -> tuple[int, list[_HostServer]]:
        """Bind one listener per host on the same port; with port 0, retry until a free number fits all."""
        if not hosts:
            return port or _free_port(self.first_ip), []
        for _attempt in range(50):
            servers: list[_HostServer] = []
            chosen = port
            try:
                for host, ip in hosts:
                    assert ipaddress.ip_address(ip).is_loopback
                    server = _HostServer((ip, chosen), self, host, tls_context)
                    servers.append(server)
                    chosen = server.server_address[1]
                return chosen, servers
            except OSError as exc:
                for server in servers:
                    server.server_close()
                if port or exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, "could not find a port free on every lab address")

    def _close_servers(self) -> None:
        for server in self._servers:
            server.server_close()
        self._servers = []

    def _accept_loop(self) -> None:
        """One thread accepts for every listener; each connection then gets its own thread."""
        assert self._wakeup is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._wakeup[0], selectors.EVENT_READ, None)
            for server in self._servers:
                selector.register(server.socket, selectors.EVENT_READ, server)
            while not self._stopping.is_set():
                for key, _events in selector.select():
                    if key.data is None:
                        return
                    key.data.handle_request()

    def _write_user_file(self) -> None:
        """Write the NTLM acceptor's credential file and point NTLM_USER_FILE at it.

        A user given without a domain is accepted as ``user``, ``.\\user`` and ``HOST\\user`` for every
        simulated host.  NTLM_USER_FILE is process-wide: the lab started last decides which users NTLM accepts.
        """
        hosts = [h for h in (self._addresses or {}) if ":" not in h and "\\" not in h]
        lines = []
        for name, password in self.users.items():
            domain, _, user = name.rpartition("\\")
            domains = [domain] if "\\" in name else ["", ".", *hosts]
            lines += [f"{d}:{user}:{password}" for d in domains]
        self.cert_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._user_file.with_name(f".{self._user_file.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, self._user_file)
        self._previous_user_file = os.environ.get("NTLM_USER_FILE")
        os.environ["NTLM_USER_FILE"] = str(self._user_file)

    def _restore_user_file(self) -> None:
        if os.environ.get("NTLM_USER_FILE") != str(self._user_file):
            return
        if self._previous_user_file is None:
            del os.environ["NTLM_USER_FILE"]
        else:
            os.environ["NTLM_USER_FILE"] = self._previous_user_file

    # ----------------------------------------------------------------- used by the connection handler

    def _delay(self, host: str) -> None:
        """Simulated network latency, plus the 'slow' fault."""
        delay = self.latency_ms / 1000.0
        if self.simulator.fault(host) == "slow":
            delay += SLOW_DELAY_S
        if delay > 0:
            self._stopping.wait(delay)

    def _check_basic(self, host: str, username: str, password: str) -> bool:
        """Basic auth against ``users`` with the same domain rules as the NTLM credential file."""
        domain, _, name = username.rpartition("\\")
        local_domains = {"", ".", *(h.lower() for h in (self._addresses or {}))}
        for key, expected in self.users.items():
            key_domain, _, key_name = key.rpartition("\\")
            if key_name.lower() != name.lower() or expected != password:
                continue
            allowed = {key_domain.lower()} if "\\" in key else local_domains
            if domain.lower() in allowed:
                return True
        return False

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _count(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    def _handle_soap(self, host: str, user: str, soap: bytes) -> tuple[int, bytes]:
        """Run one (decrypted) SOAP request; returns HTTP status and response envelope."""
        try:
            root = ET.fromstring(soap)
        except ET.ParseError:
            return 400, _fault_envelope(_invalid_xml(), "", host)
        header = root.find("s:Header", NS)
        body = root.find("s:Body", NS)
        action = (header.findtext("a:Action", "", NS) or "").strip() if header is not None else ""
        message_id = (header.findtext("a:MessageID", "", NS) or "").strip() if header is not None else ""
        if header is None or not action or not message_id:
            return 500, _fault_envelope(_missing_header(), message_id, host)
        name = action.rsplit("/", 1)[-1]
        with self._lock:
            self._stats["requests"] += 1
            self._stats["by_action"][name] = self._stats["by_action"].get(name, 0) + 1
            self._stats["by_host"][host] = self._stats["by_host"].get(host, 0) + 1
        request = _Request(host, user, action, message_id, header, body if body is not None else ET.Element("Body"))
        try:
            handler = self._handlers.get(action)
            if handler is None:
                raise _action_not_supported(action)
            reply_action, reply_body = handler(request)
        except _Fault as fault:
            return 500, _fault_envelope(fault, message_id, host)
        return 200, _envelope(reply_action, message_id, reply_body)

    # ----------------------------------------------------------------- WinRS actions

    def _create(self, req: _Request) -> tuple[str, str]:
        if self.simulator.fault(req.host) == "access-denied":
            raise _access_denied()
        resource = req.header_text("w:ResourceURI")
        if resource.lower() != CMD_RESOURCE.lower():
            raise _invalid_resource(resource)
        options = req.options
        try:
            codepage = int(options.get("WINRS_CODEPAGE", "437"))
        except ValueError:
            raise _invalid_parameter("WINRS_CODEPAGE must be a number") from None
        spec = req.body.find("rsp:Shell", NS)
        inputs = spec.findtext("rsp:InputStreams", "stdin", NS) if spec is not None else "stdin"
        outputs = spec.findtext("rsp:OutputStreams", "stdout stderr", NS) if spec is not None else "stdout stderr"
        shell = _Shell(str(uuid.uuid4()).upper(), req.host, req.user, codepage, options)
        with self._lock:
            self._shells.setdefault(req.host, {})[shell.id] = shell
        address = req.header_text("a:To") or f"http://{req.host}:5985/wsman"
        body = (
            f"<x:ResourceCreated><a:Address>{escape(address)}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{escape(resource)}</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{shell.id}</w:Selector></w:SelectorSet>'
            f"</a:ReferenceParameters></x:ResourceCreated>"
            f"<rsp:Shell><rsp:ShellId>{shell.id}</rsp:ShellId><rsp:ResourceUri>{escape(resource)}</rsp:ResourceUri>"
            f"<rsp:Owner>{escape(req.user)}</rsp:Owner><rsp:ClientIP>127.0.0.1</rsp:ClientIP>"
            f"<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut>"
            f"<rsp:InputStreams>{escape(inputs)}</rsp:InputStreams>"
            f"<rsp:OutputStreams>{escape(outputs)}</rsp:OutputStreams>"
            f"<rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime><rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"
            f"</rsp:Shell>"
        )
        return TRANSFER + "CreateResponse", body

    def _command(self, req: _Request) -> tuple[str, str]:
        shell = self._shell(req)
        line = req.body.find("rsp:CommandLine", NS)
        if line is None:
            raise _invalid_parameter("The Command request has no rsp:CommandLine.")
        arguments: list[str] = []
        for element in line.findall("rsp:Arguments", NS):
            arguments += _split_arguments(element.text or "")
        cmd = _Command(str(uuid.uuid4()).upper(), (line.findtext("rsp:Command", "", NS) or "").strip(), arguments)
        with self._lock:
            shell.commands[cmd.id] = cmd
        body = f"<rsp:CommandResponse><rsp:CommandId>{cmd.id}</rsp:CommandId></rsp:CommandResponse>"
        return SHELL + "CommandResponse", body

    def _send(self, req: _Request) -> tuple[str, str]:
        shell = self._shell(req)
        streams = req.body.findall("rsp:Send/rsp:Stream", NS)
        if not streams:
            raise _invalid_parameter("The Send request has no rsp:Stream.")
        for stream in streams:
            cmd = self._command_of(shell, stream.get("CommandId", ""))
            if stream.get("Name", "stdin") != "stdin":
                raise _invalid_parameter(f"Unknown input stream {stream.get('Name')}.")
            try:
                data = base64.b64decode(stream.text or "")
            except (binascii.Error, ValueError):
                raise _invalid_parameter("The stdin stream is not valid base64.") from None
            end = stream.get("End", "false").strip().lower() in ("true", "1")
            with cmd.cond:
                if cmd.stdin_closed:
                    raise _invalid_parameter(f"The input stream of command {cmd.id} is already closed.")
                cmd.stdin += data
                if end:
                    cmd.stdin_closed = True
                    cmd.started_at = time.monotonic()
                    worker = threading.Thread(target=self._run, args=(req.host, cmd), name=f"lab-{cmd.id}", daemon=True)
                    worker.start()
        return SHELL + "SendResponse", "<rsp:SendResponse/>"

    def _run(self, host: str, cmd: _Command) -> None:
        """Worker thread: ask the simulator, then publish the outcome at its simulated end time."""
        try:
            outcome = self.simulator.run_command(host, cmd.command, list(cmd.arguments), bytes(cmd.stdin))
        except Exception as exc:
            log.exception("lab simulator failed on %s running %r", host, cmd.command)
            outcome = CommandOutcome(b"", f"l1fix lab: simulator error: {exc!r}\r\n".encode(), 1)
        with cmd.cond:
            if cmd.outcome is None:  # not already ended by ctrl_c
                assert cmd.started_at is not None
                cmd.outcome = outcome
                cmd.done_at = max(cmd.started_at + max(outcome.duration_s, 0.0), time.monotonic())
            cmd.cond.notify_all()

    def _receive(self, req: _Request) -> tuple[str, str]:
        shell = self._shell(req)
        desired = req.body.find("rsp:Receive/rsp:DesiredStream", NS)
        command_id = desired.get("CommandId", "") if desired is not None else ""
        if not command_id:
            raise _invalid_parameter("The lab only supports Receive for a CommandId.")
        cmd = self._command_of(shell, command_id)
        deadline = time.monotonic() + req.operation_timeout
        with cmd.cond:
            # Like Windows: block until the command is done or OperationTimeout passes (then the timeout fault).
            while True:
                if cmd.terminated:
                    raise _command_terminated(cmd.id)
                now = time.monotonic()
                if cmd.done_at is not None and now >= cmd.done_at:
                    break
                if now >= deadline or self._stopping.is_set():
                    raise _timeout_fault()
                wake = deadline if cmd.done_at is None else min(deadline, cmd.done_at)
                cmd.cond.wait(wake - now)
            return SHELL + "ReceiveResponse", self._receive_body(cmd, req.max_envelope)

    @staticmethod
    def _receive_body(cmd: _Command, max_envelope: int) -> str:
        """Output streams that fit the client's MaxEnvelopeSize; Done with the exit code once all is sent."""
        assert cmd.outcome is not None
        budget = max(4096, (max_envelope - 4096) * 3 // 4)
        parts = []
        for name in ("stdout", "stderr"):
            data: bytes = getattr(cmd.outcome, name)
            chunk = data[cmd.sent[name] : cmd.sent[name] + budget]
            if chunk:
                cmd.sent[name] += len(chunk)
                budget -= len(chunk)
                encoded = base64.b64encode(chunk).decode()
                parts.append(f'<rsp:Stream Name="{name}" CommandId="{cmd.id}">{encoded}</rsp:Stream>')
        streams = ("stdout", "stderr")
        if all(cmd.sent[n] >= len(getattr(cmd.outcome, n)) for n in streams):
            parts += [f'<rsp:Stream Name="{n}" CommandId="{cmd.id}" End="true"></rsp:Stream>' for n in streams]
            exit_code = cmd.outcome.exit_code & 0xFFFFFFFF
            parts.append(
                f'<rsp:CommandState CommandId="{cmd.id}" State="{SHELL}CommandState/Done">'
                f"<rsp:ExitCode>{exit_code}</rsp:ExitCode></rsp:CommandState>"
            )
        else:
            parts.append(f'<rsp:CommandState CommandId="{cmd.id}" State="{SHELL}CommandState/Running"/>')
        return f"<rsp:ReceiveResponse>{''.join(parts)}</rsp:ReceiveResponse>"

    def _signal(self, req: _Request) -> tuple[str, str]:
        shell = self._shell(req)
        signal = req.body.find("rsp:Signal", NS)
        if signal is None:
            raise _invalid_parameter("The Signal request has no rsp:Signal.")
        cmd = self._command_of(shell, signal.get("CommandId", ""))
        code = (signal.findtext("rsp:Code", "", NS) or "").strip().rsplit("/", 1)[-1]
        if code == "terminate":
            with self._lock:
                shell.commands.pop(cmd.id, None)
            with cmd.cond:
                cmd.terminated = True
                cmd.cond.notify_all()
        elif code in ("ctrl_c", "ctrl_break"):
            with cmd.cond:
                now = time.monotonic()
                if cmd.done_at is None or now < cmd.done_at:
                    cmd.stdin_closed = True
                    cmd.outcome = CommandOutcome(b"", b"", STATUS_CONTROL_C_EXIT)
                    cmd.done_at = now
                cmd.cond.notify_all()
        else:
            raise _invalid_parameter(f"Unknown signal code {code}.")
        return SHELL + "SignalResponse", "<rsp:SignalResponse/>"

    def _delete(self, req: _Request) -> tuple[str, str]:
        with self._lock:
            shell = self._shells.get(req.host, {}).pop(req.shell_id, None)
        if shell is None:
            raise _shell_not_found(req.shell_id)
        for cmd in shell.commands.values():
            with cmd.cond:
                cmd.terminated = True
                cmd.cond.notify_all()
        return TRANSFER + "DeleteResponse", ""

    def _shell(self, req: _Request) -> _Shell:
        with self._lock:
            shell = self._shells.get(req.host, {}).get(req.shell_id)
        if shell is None:
            raise _shell_not_found(req.shell_id)
        return shell

    def _command_of(self, shell: _Shell, command_id: str) -> _Command:
        with self._lock:
            cmd = shell.commands.get(command_id.strip().upper())
        if cmd is None:
            raise _command_terminated(command_id)
        return cmd


def _free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- HTTP side


class _HostServer(ThreadingHTTPServer):
    """The listener of one simulated host on one port (HTTPS when ``tls_context`` is given)."""

    daemon_threads = True
    timeout = 0  # handle_request() is only called once a connection is waiting

    def __init__(self, address: tuple[str, int], lab: WSManLab, host: str, tls_context: ssl.SSLContext | None) -> None:
        self.lab = lab
        self.host = host
        self.tls_context = tls_context
        self.channel_bindings = lab._channel_bindings if tls_context is not None else None
        super().__init__(address, _Handler)
        self.socket.setblocking(False)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would do a reverse DNS lookup of the address; the host name is known.
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.host
        self.server_port = self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("lab connection %s -> %s failed", client_address, self.host, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    """One TCP connection.  NTLM (and so message encryption) is bound to it, so its state lives here."""

    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    timeout = IDLE_TIMEOUT_S
    server: _HostServer

    def setup(self) -> None:
        self.request.setblocking(True)
        if self.server.tls_context is not None:
            self.request.settimeout(HANDSHAKE_TIMEOUT_S)
            self.request = self.server.tls_context.wrap_socket(self.request, server_side=True)
        super().setup()
        self.lab = self.server.lab
        self.lab._track(self.request, add=True)
        self._ntlm: Any = None  # spnego context, in progress or complete
        self._ntlm_user: str | None = None
        self._user = ""

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.lab._track(self.request, add=False)
            if self.server.tls_context is not None:
                self.request.close()

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s: " + format, self.server.host, self.client_address[0], *args)

    # ----------------------------------------------------------------- HTTP methods

    def do_GET(self) -> None:
        if self._unreachable() or self._read_body() is None:
            return
        path = urlsplit(self.path).path
        if path == "/stats":
            self._send(200, json.dumps(self.lab.stats()).encode(), "application/json")
        elif path == "/":
            self._send(200, BANNER, "text/plain; charset=utf-8")
        else:
            self._send(404)

    def do_POST(self) -> None:
        if self._unreachable():
            return
        body = self._read_body()
        if body is None:
            return
        path = urlsplit(self.path).path
        if path == "/stats/reset":
            self.lab.reset_stats()
            self._send(200, json.dumps(self.lab.stats()).encode(), "application/json")
        elif path.rstrip("/").lower() != "/wsman":
            self._send(404)
        else:
            self.lab._count("http_requests")
            if self._authenticate():
                self._serve(body)

    # ----------------------------------------------------------------- plumbing

    def _unreachable(self) -> bool:
        """A host that became unreachable after start drops the connection without answering."""
        if self.lab.simulator.fault(self.server.host) != "unreachable":
            return False
        self.close_connection = True
        return True

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self._send(411, headers=[("Connection", "close")])
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self._send(400, headers=[("Connection", "close")])
            return None
        if length > MAX_HTTP_BODY:
            self._send(413, headers=[("Connection", "close")])
            return None
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return None
        return body

    def _send(self, status: int, body: bytes = b"", content_type: str | None = None, headers: Headers = None) -> None:
        self.send_response(status)
        for name, value in headers or []:
            self.send_header(name, value)
        if content_type and body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _answer(self, status: int, body: bytes = b"", content_type: str | None = None, headers: Headers = None) -> None:
        """A WS-Man answer: after the simulated latency."""
        self.lab._delay(self.server.host)
        self._send(status, body, content_type, headers)

    # ----------------------------------------------------------------- authentication

    def _challenge(self) -> None:
        offers = [("WWW-Authenticate", "Negotiate")]
        if self.server.tls_context is not None:  # Basic only where the channel is encrypted
            offers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        self._answer(401, headers=offers)

    def _authenticate(self) -> bool:
        """True when this request may proceed; otherwise a 401 has been sent."""
        header = self.headers.get("Authorization", "").strip()
        scheme, _, token = header.partition(" ")
        if scheme.lower() in ("negotiate", "ntlm"):
            return self._ntlm_step(scheme, token.strip())
        if scheme.lower() == "basic" and self.server.tls_context is not None:
            user = self._basic_user(token.strip())
            if user is not None:
                self._user = user
                return True
        elif not header and self._ntlm_user is not None:
            self._user = self._ntlm_user
            return True
        self._challenge()
        return False

    def _basic_user(self, token: str) -> str | None:
        try:
            raw = base64.b64decode(token, validate=True)
        except (binascii.Error, ValueError):
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")  # what requests sends for non-ASCII credentials
        username, sep, password = text.partition(":")
        if sep and self.lab._check_basic(self.server.host, username, password):
            return username
        return None

    def _ntlm_step(self, scheme: str, token_b64: str) -> bool:
        """One leg of the NTLM handshake (requests_ntlm sends raw NTLM under 'Negotiate' or 'NTLM')."""
        try:
            token = base64.b64decode(token_b64, validate=True)
        except (binascii.Error, ValueError):
            token = b""
        kind = struct.unpack_from("<I", token, 8)[0] if token.startswith(b"NTLMSSP\x00") and len(token) >= 12 else 0
        if kind == 1:
            self._ntlm_user = None
            self._ntlm = spnego.server(
                hostname=self.server.host, service="http", protocol="ntlm", options=spnego.NegotiateOptions.use_ntlm
            )
            try:
                challenge = self._ntlm.step(token)
            except SpnegoError as exc:
                log.info("NTLM negotiate from %s rejected: %s", self.client_address[0], exc)
            else:
                self._answer(401, headers=[("WWW-Authenticate", f"{scheme} {base64.b64encode(challenge).decode()}")])
                return False
        elif kind == 3 and self._ntlm is not None and not self._ntlm.complete:
            try:
                self._accept_authenticate(token)
            except SpnegoError as exc:
                log.info("NTLM logon to %s failed: %s", self.server.host, exc)
            else:
                self._ntlm_user = self._user = self._ntlm.client_principal or ""
                self.lab._count("auth_handshakes")
                return True
        # Kerberos/SPNEGO tokens, bad tokens, failed logons: start over
        self._ntlm = self._ntlm_user = None
        self._challenge()
        return False

    def _accept_authenticate(self, token: bytes) -> None:
        """Finish NTLM; on HTTPS check channel binding like Windows' default CbtHardeningLevel=Relaxed."""
        bindings = self.server.channel_bindings
        if bindings is None:
            self._ntlm.step(token)
            return
        try:
            self._ntlm.step(token, channel_bindings=bindings)
        except BadBindingsError as exc:
            # Relaxed: a client that sends no bindings is let in, wrong bindings are not.  pyspnego tells the
            # two cases apart only by message ("... not present in initiator response"); the context is
            # unchanged by the failed step, so it can be stepped again without bindings.
            if "not present" not in str(exc):
                raise
            self._ntlm.step(token)

    # ----------------------------------------------------------------- WS-Man over the authenticated channel

    def _serve(self, body: bytes) -> None:
        content_type = self.headers.get("Content-Type", "").lower()
        sealed = content_type.startswith("multipart/encrypted")
        if sealed:
            if ENCRYPTED_PROTOCOL.lower() not in content_type or self._ntlm is None or not self._ntlm.complete:
                self._answer(400)
                return
            try:
                soap = self._unseal(body)
            except (SpnegoError, ValueError, struct.error) as exc:
                log.info("undecryptable message to %s: %s", self.server.host, exc)
                self._answer(400)
                return
        elif not body:
            self._answer(200)  # pywinrm's empty POST that sets up encryption; not a WS-Man request
            return
        elif self.server.tls_context is None:
            # AllowUnencrypted=false: Windows answers an unencrypted SOAP message on HTTP with an empty 500.
            self._answer(500)
            return
        else:
            soap = body
        if len(soap) > MAX_REQUEST_ENVELOPE:
            self._answer(413)  # what Windows sends when a request exceeds MaxEnvelopeSizekb
            return
        status, reply = self.lab._handle_soap(self.server.host, self._user, soap)
        if sealed:
            self._answer(status, self._seal(reply), ENCRYPTED_CONTENT_TYPE)
        else:
            self._answer(status, reply, SOAP_CONTENT_TYPE)

    def _unseal(self, body: bytes) -> bytes:
        """Decrypt a multipart/encrypted body (MS-WSMV 2.2.9.1.1)."""
        start = BOUNDARY + b"\r\n"
        if not body.startswith(start):
            raise ValueError("missing MIME boundary")
        header, sep, payload = body[len(start) :].partition(start)
        length = re.search(rb"Length=(\d+)", header)
        if not sep or length is None or not payload.startswith(OCTET_STREAM):
            raise ValueError("malformed encrypted message")
        payload = payload[len(OCTET_STREAM) :].removesuffix(BOUNDARY + b"--\r\n")
        (signature_length,) = struct.unpack_from("<I", payload)
        signature = payload[4 : 4 + signature_length]
        plain = self._ntlm.unwrap(signature + payload[4 + signature_length :]).data
        if len(plain) != int(length.group(1)):
            raise ValueError("decrypted length does not match OriginalContent")
        return plain

    def _seal(self, plain: bytes) -> bytes:
        """Encrypt a response the way Windows does for NTLM-sealed sessions."""
        wrapped = self._ntlm.wrap(plain, encrypt=True).data
        signature, sealed = wrapped[:16], wrapped[16:]
        return (
            BOUNDARY + b"\r\n"
            b"\tContent-Type: " + ENCRYPTED_PROTOCOL.encode() + b"\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(plain)).encode()
            + b"\r\n"
            + BOUNDARY
            + b"\r\n"
            + OCTET_STREAM
            + struct.pack("<I", len(signature))
            + signature
            + sealed
            + BOUNDARY
            + b"--\r\n"
        )
