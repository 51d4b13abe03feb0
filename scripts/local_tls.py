"""A local CA and a server certificate for ``127.0.0.1`` and ``localhost``, for ``make run``.

Made on first use in a folder (``var/tls/`` for ``make run``), readable by its
owner only, and reused by later runs. A file that cannot be read, does not
match its key, or expires within a week is remade; so is the server's
certificate when the CA is remade. The CA's key is read and written here only:
the services get the server's certificate and key, their callers the CA's
certificate.

Run by itself, ``python scripts/local_tls.py [FOLDER]`` makes or checks the
files and prints where they are.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

DEFAULT_FOLDER = Path("var/tls")
DNS_NAMES = ("localhost",)
IP_ADDRESSES = (ipaddress.IPv4Address("127.0.0.1"),)
CA_LIFETIME = timedelta(days=365)
CERT_LIFETIME = timedelta(days=90)
RENEW_WITHIN = timedelta(days=7)
"""A certificate that expires sooner than this is remade."""
_CLOCK_SKEW = timedelta(minutes=5)
_PRIVATE_FILE = 0o600
_PRIVATE_FOLDER = 0o700


@dataclass(frozen=True, slots=True)
class LocalTls:
    """The files of the local CA and of the server certificate it signed, all PEM.

    Attributes:
        ca_file: The CA's certificate, for callers to verify against.
        ca_key_file: The CA's private key; nothing but this module reads it.
        cert_file: The server's certificate, for ``127.0.0.1`` and ``localhost``.
        key_file: The server's private key.
        made: What this run made anew (``"CA"``, ``"certificate"``), empty if it
            reused both.
    """

    ca_file: Path
    ca_key_file: Path
    cert_file: Path
    key_file: Path
    made: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Pair:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def ensure_local_tls(folder: Path = DEFAULT_FOLDER) -> LocalTls:
    """Make the CA and the server certificate in ``folder``, or reuse those there.

    Args:
        folder: Where the files are; created if missing.

    Returns:
        The files, and what was made.
    """
    folder.mkdir(mode=_PRIVATE_FOLDER, parents=True, exist_ok=True)
    folder.chmod(_PRIVATE_FOLDER)
    tls = LocalTls(
        ca_file=folder / "ca.pem",
        ca_key_file=folder / "ca.key",
        cert_file=folder / "server.pem",
        key_file=folder / "server.key",
        made=(),
    )
    now = datetime.now(UTC)
    made: list[str] = []
    ca = _load(tls.ca_file, tls.ca_key_file)
    if ca is None or not _usable_ca(ca, now):
        ca = _make_ca(now)
        _write(tls.ca_key_file, tls.ca_file, ca)
        made.append("CA")
    server = None if made else _load(tls.cert_file, tls.key_file)
    if server is None or not _usable_server(server, ca, now):
        _write(tls.key_file, tls.cert_file, _make_server(ca, now))
        made.append("certificate")
    for path in (tls.ca_file, tls.ca_key_file, tls.cert_file, tls.key_file):
        path.chmod(_PRIVATE_FILE)
    return LocalTls(
        ca_file=tls.ca_file,
        ca_key_file=tls.ca_key_file,
        cert_file=tls.cert_file,
        key_file=tls.key_file,
        made=tuple(made),
    )


def _load(cert_file: Path, key_file: Path) -> _Pair | None:
    try:
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or _public(key) != _public(
        certificate.public_key()
    ):
        return None
    return _Pair(certificate, key)


def _public(key: CertificatePublicKeyTypes | ec.EllipticCurvePrivateKey) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _current(certificate: x509.Certificate, now: datetime) -> bool:
    return (
        certificate.not_valid_before_utc <= now
        and certificate.not_valid_after_utc - RENEW_WITHIN > now
    )


def _usable_ca(ca: _Pair, now: datetime) -> bool:
    try:
        constraints = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca and _current(ca.certificate, now)


def _usable_server(server: _Pair, ca: _Pair, now: datetime) -> bool:
    if not _current(server.certificate, now):
        return False
    policy = PolicyBuilder().store(Store([ca.certificate])).time(now)
    names: list[x509.DNSName | x509.IPAddress] = [x509.DNSName(name) for name in DNS_NAMES]
    names += [x509.IPAddress(address) for address in IP_ADDRESSES]
    try:
        for name in names:
            policy.build_server_verifier(name).verify(server.certificate, [])
    except VerificationError:
        return False
    return True


def _make_ca(now: datetime) -> _Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "make run local CA")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Pair(certificate, key)


def _make_server(ca: _Pair, now: datetime) -> _Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in DNS_NAMES]
    names += [x509.IPAddress(address) for address in IP_ADDRESSES]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DNS_NAMES[0])]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + CERT_LIFETIME, ca.certificate.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return _Pair(certificate, key)


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signs_certificates,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _write(key_file: Path, cert_file: Path, pair: _Pair) -> None:
    _write_private(
        key_file,
        pair.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    _write_private(cert_file, pair.certificate.public_bytes(serialization.Encoding.PEM))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all, readable by its owner only from the start."""
    temporary = path.with_name(f".{path.name}.new")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    temporary.replace(path)


def main(argv: list[str]) -> int:
    """Make or reuse the files in ``argv[0]`` (default ``var/tls``) and print them.

    Returns:
        The exit code.
    """
    tls = ensure_local_tls(Path(argv[0]) if argv else DEFAULT_FOLDER)
    print(f"CA          {tls.ca_file}")
    print(f"certificate {tls.cert_file} (key {tls.key_file})")
    print(f"made        {', '.join(tls.made) or 'nothing: reused both'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
