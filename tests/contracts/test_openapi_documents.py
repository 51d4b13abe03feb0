"""The committed OpenAPI documents are the ones the services serve.

``openapi/user-service.json`` and ``openapi/auth-service.json`` are reviewed
like the pacts, and the bi-directional check holds the pacts to them; so each
must be exactly what its service serves at ``/openapi.json``. Each service is
started as a real process (its own ``serve`` command, a SQLite file in the
test's folder) and its document fetched without a client token; a difference
fails with a unified diff and the command that rewrites the files.
"""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import HOST, free_port
from tests.support.system import AUTH_SERVICE, USER_SERVICE, ServiceProcess

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS_DIR = ROOT / "openapi"
SCRIPT = ROOT / "scripts" / "write_openapi.py"
SERVICES = (USER_SERVICE, AUTH_SERVICE)
REWRITE_HINT = "run `make openapi` and review the change to the document like code"
SCRIPT_TIMEOUT_SECONDS = 60


def render(document: dict[str, Any]) -> str:
    """A document as committed: the served key order, two-space indent, a final newline."""
    return json.dumps(document, indent=2) + "\n"


def difference(expected: str, actual: str, expected_name: str, actual_name: str) -> str:
    """The unified diff from ``expected`` to ``actual``, or ``""`` when they are the same."""
    return "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=expected_name,
            tofile=actual_name,
        )
    )


def _process(service: str, folder: Path) -> ServiceProcess:
    prefix = service.upper().replace("-", "_")
    env = {f"{prefix}_DATABASE_URL": f"sqlite:///{folder / f'{service}.db'}"}
    if service == USER_SERVICE:
        # Never called: the document is all that is asked for.
        env["USER_SERVICE_AUTH_URL"] = f"http://{HOST}:{free_port()}"
    return ServiceProcess(service, env, folder / f"{service}.log", None)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Each service's document as it serves it, rendered, by service name."""
    folder = tmp_path_factory.mktemp("served-documents")
    documents = {}
    with ExitStack() as running:
        for service in SERVICES:
            process = _process(service, folder)
            running.enter_context(process.running())
            answer = httpx.get(f"{process.url}/openapi.json", timeout=30)
            assert answer.status_code == 200, f"{service}: {answer.status_code} {answer.text}"
            documents[service] = render(answer.json())
    return documents


@pytest.mark.parametrize("service", SERVICES)
def test_the_committed_document_is_the_served_one(served: dict[str, str], service: str) -> None:
    path = DOCUMENTS_DIR / f"{service}.json"
    if not path.is_file():
        pytest.fail(f"openapi/{path.name} is missing: {REWRITE_HINT}.", pytrace=False)
    committed = path.read_text(encoding="utf-8")

    diff = difference(committed, served[service], f"openapi/{path.name}", f"served by {service}")
    if diff:
        pytest.fail(
            f"{service} serves another document than openapi/{path.name}: {REWRITE_HINT}.\n{diff}",
            pytrace=False,
        )


def test_the_script_writes_the_served_documents(served: dict[str, str], tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
        cwd=ROOT,
    )

    for service in SERVICES:
        written = (tmp_path / f"{service}.json").read_text(encoding="utf-8")
        diff = difference(
            written, served[service], f"written for {service}", f"served by {service}"
        )
        assert not diff, f"scripts/write_openapi.py writes another document:\n{diff}"


def test_a_difference_is_shown_as_a_readable_diff() -> None:
    diff = difference('{\n  "a": 1\n}\n', '{\n  "a": 2\n}\n', "committed", "served")

    assert diff.splitlines() == [
        "--- committed",
        "+++ served",
        "@@ -1,3 +1,3 @@",
        " {",
        '-  "a": 1',
        '+  "a": 2',
        " }",
    ]
