"""Certificates for the tests, made with trustme: a CA and a server certificate it signed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import trustme

if TYPE_CHECKING:
    from pathlib import Path


@dataclass(frozen=True, slots=True)
class TestTls:
    """A test CA and a server certificate for ``127.0.0.1`` and ``localhost``, as PEM files.

    Attributes:
        ca_file: The CA's certificate, for callers to verify against.
        cert_file: The server's certificate chain.
        key_file: The server's private key.
    """

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_tls(folder: Path) -> TestTls:
    """Make a new CA and a server certificate in ``folder`` (created if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    tls = TestTls(
        ca_file=folder / "ca.pem", cert_file=folder / "server.pem", key_file=folder / "server.key"
    )
    ca.cert_pem.write_to_path(str(tls.ca_file))
    server.private_key_pem.write_to_path(str(tls.key_file))
    with tls.cert_file.open("wb") as chain:
        for blob in server.cert_chain_pems:
            chain.write(blob.bytes())
    return tls
