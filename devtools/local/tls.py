"""TLS material for the local PostgreSQL: a throwaway CA and a server certificate made at start.

The server certificate names ``localhost`` and ``127.0.0.1`` (plus any extra names), so
clients connect with ``sslmode=verify-full`` and the CA file as ``sslrootcert``, as they do
with the RDS CA bundle. Key files are mode 0600 and, when we run as root, owned by the
account PostgreSQL runs as, because PostgreSQL refuses a key anyone else can read.
"""
from __future__ import annotations

import ipaddress
import os
import pwd
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["TlsMaterial", "make_tls_material", "DEFAULT_NAMES"]

DEFAULT_NAMES = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class TlsMaterial:
    """Paths of the CA certificate (what clients trust) and the server's certificate and key."""

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    names: tuple[str, ...]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "rdsvend local stack"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _san(names: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _write(path: Path, data: bytes, mode: int, owner: str | None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)
    if owner is not None and os.geteuid() == 0:
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)


_CA_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
    encipher_only=False, decipher_only=False,
)
_SERVER_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=True,
    data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
    encipher_only=False, decipher_only=False,
)


def _make_ca(validity: tuple[datetime, datetime]) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign server certificates only (path length 0), and its key."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("rdsvend local CA")
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ca_key, ca_cert


def _server_certificate(names: tuple[str, ...], server_key: ec.EllipticCurvePrivateKey,
                        ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                        validity: tuple[datetime, datetime]) -> x509.Certificate:
    """A server-auth certificate for ``names`` (the first is its common name), signed by the CA."""
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(validity[0])
        .not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_SERVER_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def make_tls_material(
    directory: str | os.PathLike[str],
    *,
    extra_names: Iterable[str] = (),
    owner: str | None = "postgres",
    valid_for: timedelta = timedelta(days=7),
) -> TlsMaterial:
    """Create a CA and a server certificate signed by it in ``directory`` (created if needed).

    The server certificate's SAN holds ``localhost``, ``127.0.0.1`` and ``extra_names``
    (IP addresses become IP entries). The CA's private key is never written anywhere.
    ``owner`` is the account the server key is given to when running as root.
    """
    names = tuple(dict.fromkeys([*DEFAULT_NAMES, *(n.strip().lower() for n in extra_names if n.strip())]))
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    not_before, not_after = now - timedelta(minutes=5), now + valid_for

    ca_key, ca_cert = _make_ca((not_before, not_after))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _server_certificate(names, server_key, ca_key, ca_cert, (not_before, not_after))

    material = TlsMaterial(
        directory=folder,
        ca_cert=folder / "ca.crt",
        server_cert=folder / "server.crt",
        server_key=folder / "server.key",
        names=names,
    )
    pem = serialization.Encoding.PEM
    _write(material.ca_cert, ca_cert.public_bytes(pem), 0o644, owner)
    _write(material.server_cert, server_cert.public_bytes(pem), 0o644, owner)
    key_bytes = server_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write(material.server_key, key_bytes, 0o600, owner)
    return material
