"""The room's private CA and the controller's certificate (``labfleet init``), and what ``serve`` listens with.

The room network is hostile (conference Wi-Fi): every token crosses it, so the
agents talk TLS and pin this CA, never the system's list. The CA is made once
per data dir and never replaced (a new one would cut off every enrolled VM);
the server certificate is re-issued from it when a name is missing or it nears
its end. An operator's own certificate (``LABFLEET_TLS_CERT/KEY``, and
``LABFLEET_TLS_CA`` for the CA the agents pin) replaces all of this.
See docs/operations.md.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.settings import ENV_PREFIX, ConfigurationError, Settings

CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.crt", "ca.key", "server.crt", "server.key"
CA_DAYS = 3650
SERVER_DAYS = 730
RENEW_BEFORE_DAYS = 30
# Always in the certificate: the instructor's CLI on the controller's own machine reaches it there.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$")


@dataclass
class Issued:
    """What ``ensure_certificates`` did: the files, the names the certificate is for, and what was new."""

    ca_file: Path
    cert_file: Path
    names: list[str]
    new_ca: bool
    new_cert: bool


def server_names(settings: Settings, extra: Iterable[str] = ()) -> list[str]:
    """The names and addresses agents and the CLI may use for this controller, checked, in a stable order."""
    candidates = [urlsplit(settings.public_url).hostname or "" if settings.public_url else "",
                  settings.host, socket.gethostname(), *extra, *LOOPBACK_NAMES]
    names: list[str] = []
    for raw in candidates:
        name = raw.strip().strip("[]").lower()
        if name in _WILDCARD_HOSTS:
            continue
        name = _checked_name(name)
        if name not in names:
            names.append(name)
    return names


def _checked_name(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        pass
    if not _DNS_NAME.match(name):
        raise ConfigurationError(f"--tls-name: {name!r} is neither a host name nor an IP address")
    return name.rstrip(".")


def ensure_certificates(settings: Settings, extra_names: Iterable[str] = ()) -> Issued | None:
    """Make the CA (once) and a server certificate covering every name.

    None when the operator brings their own (``LABFLEET_TLS_CERT``, or ``LABFLEET_TLS_CA`` for a proxy's).
    """
    if settings.tls_cert or settings.tls_ca:
        return None
    names = server_names(settings, extra_names)
    settings.ensure_data_dir()
    folder = settings.tls_dir
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    ca_cert_path, ca_key_path = folder / CA_CERT, folder / CA_KEY
    new_ca = not ca_cert_path.exists()
    if new_ca:
        if ca_key_path.exists():
            raise ConfigurationError(f"{ca_key_path} exists without {ca_cert_path}: restore the CA certificate or "
                                     f"move both away to start a new CA (every enrolled VM must then get it)")
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _ca_certificate(ca_key, settings)
        _write_private(ca_key_path, _key_pem(ca_key))
        _write_public(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM))
    else:
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    cert_path, key_path = folder / SERVER_CERT, folder / SERVER_KEY
    new_cert = new_ca or not _covers(cert_path, ca_cert, names)
    if new_cert:
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _server_certificate(key, names, ca_cert, ca_key)
        _write_private(key_path, _key_pem(key))
        _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return Issued(ca_cert_path, cert_path, names, new_ca, new_cert)


def certificate_names(path: Path) -> list[str]:
    """The DNS names and IP addresses a certificate is for (its subjectAltName)."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return _san_names(cert)


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*san.get_values_for_type(x509.DNSName), *(str(ip) for ip in san.get_values_for_type(x509.IPAddress))]


def _covers(cert_path: Path, ca_cert: x509.Certificate, names: list[str]) -> bool:
    if not cert_path.exists():
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    renew_after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=RENEW_BEFORE_DAYS)
    return (cert.issuer == ca_cert.subject and cert.not_valid_after_utc > renew_after
            and set(names) <= set(_san_names(cert)))


def _ca_certificate(key: ec.EllipticCurvePrivateKey, settings: Settings) -> x509.Certificate:
    # A random serial in the name: two rooms' CAs never look alike in a trust store.
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "labfleet"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"labfleet room CA {os.urandom(4).hex()}")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))


def _server_certificate(key: ec.EllipticCurvePrivateKey, names: list[str], ca_cert: x509.Certificate,
                        ca_key) -> x509.Certificate:
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(min(now + datetime.timedelta(days=SERVER_DAYS), ca_cert.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    """A key: created 0600 (never briefly readable), replaced atomically."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


# -- serving ---------------------------------------------------------------------

def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS 1.2 or newer with Python's default (forward-secret, AEAD) ciphers; no client certificates."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"{ENV_PREFIX}TLS_CERT/{ENV_PREFIX}TLS_KEY: cannot load {cert_file} with "
                                 f"{key_file}: {exc}") from None
    return context
