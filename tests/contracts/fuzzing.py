"""schemathesis against a real service: its command line, its report read back, its logs read.

:func:`fuzz` runs ``schemathesis run`` as a process against a service's served
OpenAPI document, with a client token and a fixed seed, and reads its NDJSON
report into :class:`Finding` lines that name what was sent and what came back,
without the token or any password. :func:`log_problems` then reads the
service's JSON log for a traceback or a 500.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.servers import venv_command

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

SEED = 20260601
"""The seed of every run: the same requests, in the same order, every time."""

MAX_EXAMPLES = 100
"""Test cases per operation and phase: each service's run takes about 10 to 30 s on two cores."""

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
    "object_level_authorization",
)
"""Every check of schemathesis 4.32 but ``max_response_time``, named one by one: ``all``
would turn that one on too, with a limit of 10 s."""

PHASES = "examples,coverage,fuzzing,stateful"
"""Every phase, the stateful one (which follows the document's links) included."""

TOKEN_VARIABLE = "FUZZ_CLIENT_TOKEN"
"""The variable the run's configuration reads the client token from, so it is never an argument."""

HOOKS = Path(__file__).with_name("fuzzing_hooks.py")
"""The hooks schemathesis loads for the run (see that module)."""

HIDDEN = "<hidden>"
"""What a finding shows instead of a password."""

SENSITIVE_MARKERS = ["token", "secret", "password", "auth", "session", "passwd", "credential"]
"""What in a name makes schemathesis hide a value in its reports."""

RUN_TIMEOUT_SECONDS = 100.0
SENT_LIMIT = 160
ANSWER_LIMIT = 240

_SECRET_FIELDS = frozenset({"password"})
_SECRET_HEADERS = frozenset({"authorization"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_TRACEBACK_FIELDS = ("exception", "exc_info", "exc_text", "stack_info", "traceback")


@dataclass(frozen=True)
class KnownUser:
    """A user auth-service knows, which the run may sign in or sign up as.

    Attributes:
        username: The username.
        password: Its password.
    """

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, order=True)
class Finding:
    """One failed check of one kind: the operation, the check, what was sent, what came back.

    Attributes:
        service: The service fuzzed.
        operation: The operation, e.g. ``POST /accounts``.
        check: The check that failed, with its code (``positive_data_acceptance ST202``).
        status: The status of the answer.
        answer: The answer's body, shortened (a 422's refused fields).
        sent: The first request found that got it: headers and body, passwords hidden.
    """

    service: str
    operation: str
    check: str
    status: int
    answer: str
    sent: str = field(compare=False)

    def __str__(self) -> str:
        return (
            f"{self.service} {self.operation} {self.check}: sent {self.sent}"
            f" -> {self.status} {self.answer}"
        )


@dataclass(frozen=True)
class FuzzRun:
    """What a run of schemathesis found.

    Attributes:
        exit_code: Its exit status (0: no failure).
        findings: Each failed check of each kind, once.
        errors: The errors it met (a document it could not load, a request that failed).
        statuses: How often each operation got each status, e.g. ``("POST /accounts", 201)``.
        output: What it printed.
    """

    exit_code: int
    findings: list[Finding]
    errors: list[str]
    statuses: Counter[tuple[str, int]]
    output: str

    def summary(self) -> str:
        """Everything found, one line each; the end of the output if nothing explains a failure."""
        lines = [str(finding) for finding in self.findings] + self.errors
        if not lines and self.exit_code != 0:
            lines.append(self.output[-3000:])
        return "\n".join(lines)


def write_config(folder: Path, users: Sequence[KnownUser]) -> Path:
    """Write the run's ``schemathesis.toml``: the client token's header and the known users.

    The token is read from :data:`TOKEN_VARIABLE` when the run starts. The
    usernames and passwords of ``users`` are offered for the bodies'
    ``username`` and ``password`` (each drawn from them in about a third
    of the cases), so that some checks succeed and some sign-ups are created.

    Args:
        folder: Where the file goes.
        users: The users auth-service knows.

    Returns:
        The file.
    """
    lines = [
        "[headers]",
        f'Authorization = "Bearer ${{{TOKEN_VARIABLE}}}"',
        "",
        # schemathesis's own markers but "key", so that the Idempotency-Key sent shows.
        "[output.sanitization]",
        f"sensitive-markers = {json.dumps(SENSITIVE_MARKERS)}",
        "",
    ]
    if users:
        usernames = sorted({user.username for user in users})
        passwords = sorted({user.password for user in users})
        lines += [
            "[dictionaries.usernames]",
            f"values = {json.dumps(usernames)}",
            "",
            "[dictionaries.passwords]",
            f"values = {json.dumps(passwords)}",
            "",
            "[parameters]",
            '"body.username" = { dictionary = "usernames", probability = 0.35 }',
            '"body.password" = { dictionary = "passwords", probability = 0.35 }',
            "",
        ]
    config = folder / "schemathesis.toml"
    config.write_text("\n".join(lines), encoding="utf-8")
    return config


def command(document_url: str, config: Path, report_folder: Path) -> list[str]:
    """The command line of a run against the document at ``document_url``.

    Every check but the response time's (:data:`CHECKS`), every phase, one
    worker, a fixed seed, derandomized generation (no example database), and
    every failure of an operation reported, not only the first.
    """
    return [
        venv_command("schemathesis"),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        document_url,
        "--checks",
        ",".join(CHECKS),
        "--phases",
        PHASES,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-deterministic",
        "--continue-on-failure",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--report",
        "ndjson,junit",
        "--report-dir",
        str(report_folder),
        "--report-ndjson-path",
        str(report_folder / "events.ndjson"),
        "--report-junit-path",
        str(report_folder / "junit.xml"),
    ]


def fuzz(
    service: str, document_url: str, token: str, folder: Path, users: Sequence[KnownUser]
) -> FuzzRun:
    """Run schemathesis against ``service``'s document at ``document_url``, calling with ``token``.

    Args:
        service: The service's name, for the findings.
        document_url: Where the service serves its OpenAPI document; the
            requests go to the same origin.
        token: The client token to call with (the document is fetched with it too).
        folder: Where the configuration and reports go; also the run's working folder.
        users: The users auth-service knows (see :func:`write_config`).

    Returns:
        What it found.
    """
    folder.mkdir(parents=True, exist_ok=True)
    report_folder = folder / "report"
    report_folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, users)
    loopback = "127.0.0.1,localhost"
    finished = subprocess.run(
        command(document_url, config, report_folder),
        cwd=folder,
        env={
            **os.environ,
            TOKEN_VARIABLE: token,
            "SCHEMATHESIS_HOOKS": str(HOOKS),
            "NO_PROXY": loopback,
            "no_proxy": loopback,
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_SECONDS,
    )
    (report_folder / "output.txt").write_text(finished.stdout + finished.stderr, encoding="utf-8")
    events = list(_events(report_folder / "events.ndjson"))
    return FuzzRun(
        exit_code=finished.returncode,
        findings=findings_in(service, events),
        errors=errors_in(events),
        statuses=statuses_in(events),
        output=finished.stdout + finished.stderr,
    )


def _events(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _scenarios(events: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for event in events:
        finished = event.get("ScenarioFinished")
        if finished is not None:
            yield finished.get("recorder", {})


def findings_in(service: str, events: Iterable[dict[str, Any]]) -> list[Finding]:
    """Every failed check in a run's NDJSON events, once per operation, check, status and answer.

    schemathesis counts a kind of failure of an operation once; this lists
    each different answer, so that every refused field shows.
    """
    found: dict[Finding, None] = {}
    for recorder in _scenarios(events):
        cases = recorder.get("cases", {})
        interactions = recorder.get("interactions", {})
        for case_id, checks in recorder.get("checks", {}).items():
            case = cases.get(case_id, {}).get("value", {})
            response = interactions.get(case_id, {}).get("response") or {}
            for check in checks:
                if check.get("status") != "failure":
                    continue
                failure = check.get("failure_info", {}).get("failure", {})
                finding = Finding(
                    service=service,
                    operation=f"{case.get('method', '?')} {case.get('path', '?')}",
                    check=f"{check.get('name')} {failure.get('code', '')}".strip(),
                    status=int(response.get("status_code", 0)),
                    answer=_answer(response),
                    sent=_sent(case),
                )
                found.setdefault(finding, None)
    return sorted(found)


def errors_in(events: Iterable[dict[str, Any]]) -> list[str]:
    """The errors of a run: fatal ones, and those of single operations."""
    return [
        f"{kind}: {json.dumps(event[kind], default=str)[:1000]}"
        for event in events
        for kind in ("FatalError", "NonFatalError")
        if kind in event
    ]


def statuses_in(events: Iterable[dict[str, Any]]) -> Counter[tuple[str, int]]:
    """How often each operation got each status in a run."""
    statuses: Counter[tuple[str, int]] = Counter()
    for recorder in _scenarios(events):
        cases = recorder.get("cases", {})
        for case_id, interaction in recorder.get("interactions", {}).items():
            case = cases.get(case_id, {}).get("value", {})
            response = interaction.get("response") or {}
            if "status_code" in response:
                operation = f"{case.get('method', '?')} {case.get('path', '?')}"
                statuses[operation, int(response["status_code"])] += 1
    return statuses


def _sent(case: dict[str, Any]) -> str:
    parts = [
        f"{name}: {_short(str(value), 60)!r}"
        for name, value in sorted((case.get("headers") or {}).items())
        if name.lower() not in _SECRET_HEADERS
    ]
    parts += [
        f"{location} {_hidden(values)}"
        for location in ("path_parameters", "query", "cookies")
        if (values := case.get(location))
    ]
    if "body" in case:
        media_type = case.get("media_type") or "no media type"
        parts.append(f"{media_type} {_body(case['body'])}")
    return ", ".join(parts) or "nothing"


def _body(body: object) -> str:
    """A body as sent, passwords hidden: an object's named fields first, the others counted."""
    if isinstance(body, dict) and set(body) == {"$base64"}:
        return _short(f"bytes {base64.b64decode(body['$base64'])!r}", SENT_LIMIT)
    if not isinstance(body, dict):
        return _short(json.dumps(_hidden(body)), SENT_LIMIT)
    named = {key: value for key, value in body.items() if _NAME.fullmatch(key)}
    shown = {key: named[key] for key in sorted(named, key=lambda key: key.startswith("_"))}
    text = _short(json.dumps(_hidden(shown)), SENT_LIMIT)
    others = len(body) - len(named)
    return f"{text} and {others} other field(s)" if others else text


def _hidden(value: object) -> object:
    match value:
        case dict():
            return {
                key: HIDDEN if str(key).lower() in _SECRET_FIELDS else _hidden(item)
                for key, item in value.items()
            }
        case list():
            return [_hidden(item) for item in value]
    return value


def _answer(response: dict[str, Any]) -> str:
    content = response.get("content") or {}
    raw = content.get("$base64")
    text = base64.b64decode(raw).decode("utf-8", "replace") if raw else content.get("string", "")
    try:
        body = json.loads(text)
    except ValueError:
        return _short(repr(text), ANSWER_LIMIT)
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        fields = "; ".join(
            f"{'.'.join(map(str, item.get('loc', [])))}: {item.get('msg', '')}"
            for item in detail
            if isinstance(item, dict)
        )
        return _short(f"{body.get('code', '')} [{fields}]", ANSWER_LIMIT)
    return _short(json.dumps(body), ANSWER_LIMIT)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def log_problems(log_path: Path) -> list[str]:
    """Return each line of a service's JSON log that holds a traceback or records a 500.

    A line that is not JSON counts if it holds ``Traceback``.
    """
    problems = []
    text = log_path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        recorded = isinstance(entry, dict) and (
            any(entry.get(name) for name in _TRACEBACK_FIELDS) or entry.get("status") == 500
        )
        if recorded or "Traceback" in line:
            problems.append(f"{log_path.name}:{number}: {_short(line, 400)}")
    return problems
