"""TLS material for the lab: a throw-away CA and one server certificate for every simulated host.

Files in ``cert_dir``: ``ca.pem`` (give it to clients as their trust anchor), ``ca-key.pem``,
``server.pem`` and ``server-key.pem``.  Existing files are reused while they still fit the requested
names and addresses; otherwise the server certificate (and, if needed, the CA) is made anew.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

CA_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
CERT_NAME = "server.pem"
KEY_NAME = "server-key.pem"

_CA_DAYS = 3650
_SERVER_DAYS = 397
_MIN_REMAINING = dt.timedelta(days=1)
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class LabCertificates:
    """Paths of the lab's PEM files."""

    ca_path: Path
    cert_path: Path
    key_path: Path


def ensure_certificates(cert_dir: Path, dns_names: Sequence[str], ip_addresses: Sequence[str]) -> LabCertificates:
    """Return the lab CA and a server certificate valid for ``dns_names`` and ``ip_addresses``."""
    cert_dir = Path(cert_dir)
    cert_dir.mkdir(parents=True, exist_ok=True)
    names = sorted({n for n in [*dns_names, "localhost"] if _is_dns_name(n)})
    ips = sorted({ipaddress.ip_address(ip) for ip in ip_addresses}, key=int)
    certs = LabCertificates(cert_dir / CA_NAME, cert_dir / CERT_NAME, cert_dir / KEY_NAME)
    with _locked(cert_dir / ".lock"):
        ca = _load_ca(cert_dir)
        if ca is None:
            ca = _new_ca()
            _write_key(cert_dir / CA_KEY_NAME, ca[1])
            _write_cert(certs.ca_path, ca[0])
        if not _server_cert_fits(certs, ca[0], names, ips):
            cert, key = _new_server_cert(ca, names, ips)
            _write_key(certs.key_path, key)
            _write_cert(certs.cert_path, cert)
    return certs


def server_context(certs: LabCertificates) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or newer) using the lab certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certs.cert_path, certs.key_path)
    return ctx


def end_point_hash(cert_pem_path: Path) -> bytes:
    """RFC 5929 ``tls-server-end-point`` hash of a certificate (what NTLM channel binding uses)."""
    cert = x509.load_pem_x509_certificate(Path(cert_pem_path).read_bytes())
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        algorithm = None
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(serialization.Encoding.DER))
    return digest.finalize()


def _is_dns_name(name: str) -> bool:
    """True for names that can go into a DNS SAN as they are (ASCII host names)."""
    return bool(name) and name.isascii() and all(part and part.replace("-", "").isalnum() for part in name.split("."))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _still_valid(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > _MIN_REMAINING


def _load_ca(cert_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The existing CA and its key, or None when missing, broken or about to expire."""
    try:
        cert = x509.load_pem_x509_certificate((cert_dir / CA_NAME).read_bytes())
        key = serialization.load_pem_private_key((cert_dir / CA_KEY_NAME).read_bytes(), password=None)
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not constraints.ca or not _still_valid(cert):
        return None
    if key.public_key() != cert.public_key():
        return None
    return cert, key


def _server_cert_fits(certs: LabCertificates, ca: x509.Certificate, names: list[str], ips: list[_IP]) -> bool:
    """True when the existing server certificate is signed by ``ca``, current, and covers every name and IP."""
    try:
        cert = x509.load_pem_x509_certificate(certs.cert_path.read_bytes())
        key = serialization.load_pem_private_key(certs.key_path.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    if not _still_valid(cert) or key.public_key() != cert.public_key():
        return False
    have_names = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    have_ips = set(san.get_values_for_type(x509.IPAddress))
    return {n.lower() for n in names} <= have_names and set(ips) <= have_ips


def _new_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "l1fix lab (simulation)"),
            x509.NameAttribute(NameOID.COMMON_NAME, "l1fix lab CA"),
        ]
    )
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server_cert(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    names: list[str],
    ips: list[_IP],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ip) for ip in ips]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "l1fix lab WinRM")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=_SERVER_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    _write_atomic(path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_atomic(path, pem, 0o600)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)
    with open(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Serialise certificate generation between processes sharing one cert_dir."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
