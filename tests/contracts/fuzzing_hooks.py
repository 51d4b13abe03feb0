"""The schemathesis hooks of the fuzzing runs, loaded by schemathesis itself from this file.

- **Usernames.** The documents give a username's lengths and name its rule
  with a ``format`` (RFC 8265's UsernameCaseMapped profile), since no regular
  expression says exactly which strings the profile accepts. So that
  ``positive_data_acceptance`` sends only usernames the document promises to
  take, the format is generated here from letters, digits and visible ASCII,
  and kept only where the services' own rule (the ``usernames`` package) takes
  it. Negative data is left to schemathesis.
- **A reused ``Idempotency-Key``.** schemathesis reuses small values, so it
  sends one key with different bodies. user-service then answers ``422`` with
  the code ``idempotency_key_mismatch``, as the Idempotency-Key draft asks: an
  answer to the server's state, which no schema can describe. That one answer
  is not counted as valid data refused.
- **Overload.** A request with a small ``X-Time-Budget-Ms`` is answered
  ``503`` with ``Retry-After`` and the code ``overloaded``: no check can be had
  within the caller's budget. That answer is documented, so it is not counted
  as a server error; every other 5xx is.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from hypothesis import strategies as st

from servicekit.openapi import USERNAME_FORMAT
from usernames import MAX_USERNAME_LENGTH, InvalidUsernameError, canonical_username

IDEMPOTENCY_KEY_MISMATCH = "idempotency_key_mismatch"
OVERLOADED = "overloaded"
REJECTED_POSITIVE_DATA = "ST202"
SERVER_ERROR = "ST101"


def _is_username(text: str) -> bool:
    try:
        canonical_username(text)
    except InvalidUsernameError:
        return False
    return True


_USERNAME_CHARACTERS = st.characters(
    categories=("Ll", "Lu", "Lo", "Nd"), include_characters="!#$%&*+-.^_`|~"
)
schemathesis.openapi.format(
    USERNAME_FORMAT,
    st.text(_USERNAME_CHARACTERS, min_size=1, max_size=MAX_USERNAME_LENGTH).filter(_is_username),
)


def _code_of(response: schemathesis.Response) -> object:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


@schemathesis.hook
def filter_failure(
    _context: schemathesis.HookContext,
    failure: object,
    _case: schemathesis.Case[Any],
    response: schemathesis.Response,
) -> bool:
    """Keep every failure but the two documented answers described above."""
    code = getattr(failure, "code", None)
    if code == REJECTED_POSITIVE_DATA:
        return _code_of(response) != IDEMPOTENCY_KEY_MISMATCH
    if code == SERVER_ERROR and response.status_code == 503:
        return not (_code_of(response) == OVERLOADED and "retry-after" in response.headers)
    return True
