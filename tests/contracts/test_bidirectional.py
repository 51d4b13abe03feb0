"""The bi-directional contract check: each committed pact against its provider's document.

PactFlow's openapi-pact-comparator (pinned in ``package.json``, installed into
``node_modules/`` by ``make test``) reads a pact and an OpenAPI document from
local files and reports each interaction the document does not describe: a
path, method, status, header or body field the provider never documented. Pact
verification replays the pact against the running provider; this check holds
the provider's published description to the same pact, so the document cannot
drift from what consumers rely on. A pact must match with no error and no
warning.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.contracts.committed_pacts import pact_path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS_DIR = ROOT / "openapi"
PACKAGE = "@pactflow/openapi-pact-comparator"
PACKAGE_DIR = ROOT / "node_modules" / PACKAGE
INSTALL_HINT = (
    "run `make node_modules/.package-lock.json` (the npm step of `make test`, which runs `npm ci`)"
)
# (consumer, provider): the pact between them and the provider's committed document.
PAIRS = [("frontend-web", "user-service"), ("user-service", "auth-service")]
TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Finding:
    """One result of the comparator: an error or a warning about one interaction."""

    type: str
    code: str
    message: str
    interaction: str
    pact_location: str
    document_location: str

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> Finding:
        mock = result.get("mockDetails") or {}
        spec = result.get("specDetails") or {}
        return cls(
            type=result["type"],
            code=result["code"],
            message=result["message"],
            interaction=str(mock.get("interactionDescription", "")),
            pact_location=str(mock.get("location", "")),
            document_location=str(spec.get("location", "")),
        )

    def __str__(self) -> str:
        return (
            f"{self.type} {self.code}: {self.message}\n"
            f"    interaction {self.interaction!r} at {self.pact_location}; "
            f"document at {self.document_location}"
        )


@dataclass(frozen=True)
class Comparator:
    """The comparator's command line, run by the pinned Node.js package."""

    node: str
    cli: Path

    def compare(self, pact: Path, document: Path) -> tuple[int, list[Finding]]:
        """Return the comparator's exit code and findings for ``pact`` against ``document``."""
        completed = subprocess.run(
            [self.node, str(self.cli), "--oas", str(document), str(pact)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
            cwd=ROOT,
        )
        try:
            (line,) = completed.stdout.splitlines()
            results = json.loads(line)
        except ValueError:
            pytest.fail(
                f"The comparator did not answer one line of JSON (exit code "
                f"{completed.returncode}).\nstdout:\n{completed.stdout}\n"
                f"stderr:\n{completed.stderr}",
                pytrace=False,
            )
        return completed.returncode, [Finding.from_result(result) for result in results]


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _read_json(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="module")
def comparator() -> Comparator:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            f"Node.js (`node`) is not on PATH: install Node.js and npm, then {INSTALL_HINT}.",
            pytrace=False,
        )
    manifest = PACKAGE_DIR / "package.json"
    if not manifest.is_file():
        pytest.fail(f"{PACKAGE} is not installed in node_modules: {INSTALL_HINT}.", pytrace=False)
    pinned = _read_json(ROOT / "package.json")["dependencies"][PACKAGE]
    installed = _read_json(manifest)
    if installed["version"] != pinned:
        pytest.fail(
            f"node_modules holds {PACKAGE} {installed['version']}, package.json pins "
            f"{pinned}: {INSTALL_HINT}.",
            pytrace=False,
        )
    (cli,) = installed["bin"].values()
    return Comparator(node=node, cli=PACKAGE_DIR / cli)


def committed_document(provider: str) -> Path:
    """Return the committed OpenAPI document of ``provider``, failing when it is missing."""
    path = DOCUMENTS_DIR / f"{provider}.json"
    if not path.is_file():
        pytest.fail(f"{_relative(path)} is missing: run `make openapi` to write it.", pytrace=False)
    return path


def _report(pact: Path, document: Path, findings: list[Finding]) -> str:
    errors = sum(finding.type == "error" for finding in findings)
    summary = (
        f"{_relative(pact)} against {_relative(document)}: errors: {errors}, "
        f"warnings: {len(findings) - errors}. Describe what the service does in its routes "
        "and models and run `make openapi`, or correct the consumer's pact."
    )
    return "\n".join([summary, *(str(finding) for finding in findings)])


@pytest.mark.contract
@pytest.mark.parametrize(("consumer", "provider"), PAIRS, ids=[f"{c}-{p}" for c, p in PAIRS])
def test_pact_matches_document(comparator: Comparator, consumer: str, provider: str) -> None:
    pact, document = pact_path(consumer, provider), committed_document(provider)
    exit_code, findings = comparator.compare(pact, document)
    if findings or exit_code != 0:
        pytest.fail(_report(pact, document, findings), pytrace=False)


def _spoil(pact: dict[str, Any]) -> tuple[dict[str, Any], set[tuple[str, str, str]]]:
    """Return a copy of ``pact`` with three things the document does not have, and them.

    A successful interaction sends an undocumented request header and gets an
    undocumented response field; another interaction gets a status the
    document does not list. (The comparator checks request headers only for
    successful interactions.)
    """
    spoiled = copy.deepcopy(pact)
    interactions = spoiled["interactions"]
    created = next(
        item
        for item in interactions
        if 200 <= item["response"]["status"] < 300
        and isinstance(item["response"].get("body", {}).get("content"), dict)
    )
    created["request"].setdefault("headers", {})["X-Undocumented-Header"] = ["1"]
    created["response"]["body"]["content"]["undocumentedField"] = "surprise"
    other = next(item for item in interactions if item is not created)
    other["response"]["status"] = 418
    expected = {
        ("warning", "request.header.unknown", created["description"]),
        ("error", "response.body.incompatible", created["description"]),
        ("error", "response.status.unknown", other["description"]),
    }
    return spoiled, expected


@pytest.mark.contract
def test_wrong_pact_is_reported(comparator: Comparator, tmp_path: Path) -> None:
    consumer, provider = PAIRS[0]
    committed, document = pact_path(consumer, provider), committed_document(provider)
    spoiled, expected = _spoil(_read_json(committed))
    wrong = tmp_path / committed.name
    wrong.write_text(json.dumps(spoiled, indent=2), encoding="utf-8")

    _, before = comparator.compare(committed, document)
    exit_code, after = comparator.compare(wrong, document)

    new = [finding for finding in after if finding not in before]
    assert {(f.type, f.code, f.interaction) for f in new} == expected, _report(wrong, document, new)
    assert any("undocumentedField" in f.message for f in new), _report(wrong, document, new)
    assert any("x-undocumented-header" in f.message for f in new), _report(wrong, document, new)
    assert exit_code == 1, f"the comparator exited {exit_code} for a pact with errors"
