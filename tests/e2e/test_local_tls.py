"""``make run``'s local CA (scripts/local_tls.py): made once, owner-only, trusted for both names."""

from __future__ import annotations

import ssl
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import trustme
from fastapi import FastAPI

from tests.support import tls as support_tls
from tests.support.servers import serve_in_thread

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "local_tls.py"
FILES = ("ca.pem", "ca.key", "server.pem", "server.key")

pytestmark = pytest.mark.e2e


def run_local_tls(folder: Path) -> str:
    """Run the script on ``folder``; return what it printed."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(folder)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def contents(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILES}


def as_test_tls(folder: Path) -> support_tls.TestTls:
    return support_tls.TestTls(
        ca_file=folder / "ca.pem", cert_file=folder / "server.pem", key_file=folder / "server.key"
    )


def answers_over_verified_https(folder: Path) -> set[int]:
    """The statuses of a small app served with the folder's certificate, at both names."""
    app = FastAPI()

    @app.get("/")
    def root() -> dict[str, str]:
        return {"status": "ok"}

    tls = as_test_tls(folder)
    verify = ssl.create_default_context(cafile=str(tls.ca_file))
    with serve_in_thread(app, tls=tls) as url:
        port = url.rpartition(":")[2]
        return {
            httpx.get(f"https://{host}:{port}/", verify=verify, timeout=10).status_code
            for host in ("127.0.0.1", "localhost")
        }


def write_expired_certificate(folder: Path) -> None:
    now = datetime.now(UTC)
    expired = trustme.CA().issue_cert(
        "127.0.0.1",
        "localhost",
        not_before=now - timedelta(days=30),
        not_after=now - timedelta(days=1),
    )
    expired.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
    expired.private_key_pem.write_to_path(str(folder / "server.key"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder where the first run has made the files."""
    folder = tmp_path / "var" / "tls"
    assert "made        CA, certificate" in run_local_tls(folder)
    return folder


def test_the_certificate_verifies_against_the_ca_for_127_0_0_1_and_localhost(
    folder: Path,
) -> None:
    assert answers_over_verified_https(folder) == {200}


def test_a_client_without_the_ca_refuses_the_certificate(folder: Path) -> None:
    app = FastAPI()
    with (
        serve_in_thread(app, tls=as_test_tls(folder)) as url,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        httpx.get(url, timeout=10)


def test_every_file_is_readable_by_its_owner_only(folder: Path) -> None:
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {name: stat.S_IMODE((folder / name).stat().st_mode) for name in FILES} == dict.fromkeys(
        FILES, 0o600
    )
    assert sorted(path.name for path in folder.iterdir()) == sorted(FILES)


def test_a_second_run_reuses_the_files(folder: Path) -> None:
    first = contents(folder)

    assert "made        nothing: reused both" in run_local_tls(folder)
    assert contents(folder) == first


def test_a_second_run_makes_the_files_owner_only_again(folder: Path) -> None:
    (folder / "server.key").chmod(0o644)
    folder.chmod(0o755)

    run_local_tls(folder)

    assert stat.S_IMODE((folder / "server.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_an_expired_certificate_is_remade_by_the_same_ca(folder: Path) -> None:
    first = contents(folder)
    write_expired_certificate(folder)

    assert "made        certificate" in run_local_tls(folder)
    remade = contents(folder)
    assert remade["ca.pem"] == first["ca.pem"]
    assert remade["ca.key"] == first["ca.key"]
    assert remade["server.pem"] != first["server.pem"]
    assert answers_over_verified_https(folder) == {200}


def test_a_certificate_of_another_ca_is_remade(folder: Path) -> None:
    other = trustme.CA().issue_cert("127.0.0.1", "localhost")
    other.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
    other.private_key_pem.write_to_path(str(folder / "server.key"))

    assert "made        certificate" in run_local_tls(folder)
    assert answers_over_verified_https(folder) == {200}


@pytest.mark.parametrize("name", ["ca.key", "ca.pem"])
def test_an_unreadable_ca_is_remade_with_a_new_certificate(folder: Path, name: str) -> None:
    first = contents(folder)
    (folder / name).write_text("not a PEM file\n")

    assert "made        CA, certificate" in run_local_tls(folder)
    remade = contents(folder)
    assert all(remade[file] != first[file] for file in FILES)
    assert answers_over_verified_https(folder) == {200}


def test_an_unreadable_certificate_is_remade(folder: Path) -> None:
    (folder / "server.key").write_bytes(b"")

    assert "made        certificate" in run_local_tls(folder)
    assert answers_over_verified_https(folder) == {200}
