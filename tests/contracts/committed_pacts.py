"""Compare the pacts the consumer tests write with the files committed in ``pacts/``.

The committed files are reviewed like code, and provider verifications read
them, so no test depends on another having run first. A consumer test fails,
with a diff, when the interaction it wrote differs from the committed one.
``make pacts`` sets ``PACTS_REWRITE=1``, which writes the interactions into the
committed files instead.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pact.pact import PactServer

PACTS_DIR = Path(__file__).resolve().parents[2] / "pacts"
REWRITE = os.environ.get("PACTS_REWRITE") == "1"
# Versions of the library that wrote a file: they change with upgrades, not with the contract.
LIBRARY_METADATA = ("pactRust", "pactPython")


def pact_path(consumer: str, provider: str) -> Path:
    """Return the committed pact file between ``consumer`` and ``provider``."""
    return PACTS_DIR / f"{consumer}-{provider}.json"


def _load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _dump(document: object) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _without_library_versions(document: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in document["metadata"].items() if k not in LIBRARY_METADATA}
    return {**document, "metadata": metadata}


def _header(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in _without_library_versions(document).items() if k != "interactions"}


def _fail_with_diff(what: str, committed: object, written: object, path: Path) -> None:
    diff = "\n".join(
        difflib.unified_diff(
            _dump(committed).splitlines(),
            _dump(written).splitlines(),
            fromfile=f"committed {path.name}",
            tofile="written by this test",
            lineterm="",
        )
    )
    pytest.fail(
        f"{what} differs from the committed {path.relative_to(PACTS_DIR.parent)}.\n"
        f"Review the change, then run `make pacts` to rewrite the file.\n{diff}",
        pytrace=False,
    )


def check_interaction(server: PactServer, consumer: str, provider: str, scratch: Path) -> None:
    """Write the pact of ``server`` and compare its one interaction with the committed file.

    Args:
        server: The mock server a consumer test has just driven.
        consumer: Name of the consumer.
        provider: Name of the provider.
        scratch: An empty folder to write the pact into.
    """
    server.write_file(scratch, overwrite=True)
    written = _load(scratch / f"{consumer}-{provider}.json")
    (interaction,) = written["interactions"]
    description = interaction["description"]
    path = pact_path(consumer, provider)
    committed = _load(path) if path.exists() else {**written, "interactions": []}
    by_description = {item["description"]: item for item in committed["interactions"]}
    if REWRITE:
        by_description[description] = interaction
        document = {
            **_without_library_versions(written),
            "interactions": [by_description[key] for key in sorted(by_description)],
        }
        path.write_text(_dump(document), encoding="utf-8")
        return
    if _header(committed) != _header(written):
        _fail_with_diff("The pact header", _header(committed), _header(written), path)
    if by_description.get(description) != interaction:
        _fail_with_diff(
            f"Interaction {description!r}", by_description.get(description), interaction, path
        )


def check_descriptions(consumer: str, provider: str, descriptions: set[str]) -> None:
    """Check that the committed file holds exactly the interactions the consumer tests define.

    Under ``PACTS_REWRITE=1``, interactions no test defines any more are removed.

    Args:
        consumer: Name of the consumer.
        provider: Name of the provider.
        descriptions: The descriptions of every interaction the consumer tests define.
    """
    path = pact_path(consumer, provider)
    committed = _load(path)
    found = {item["description"] for item in committed["interactions"]}
    if REWRITE:
        committed["interactions"] = [
            item for item in committed["interactions"] if item["description"] in descriptions
        ]
        path.write_text(_dump(committed), encoding="utf-8")
        return
    assert found == descriptions, (
        f"{path.name}: stale interactions {sorted(found - descriptions)}, "
        f"missing interactions {sorted(descriptions - found)}; run `make pacts`"
    )
