"""Signing up: the credentials checked by auth-service, then the account created, once per key.

This is user-service's use case, and it knows nothing of HTTP. It raises a
domain error for each way a sign-up creates no account; the routes
(:func:`user_service.routes.answer_to`) turn each into its answer.

- :class:`InvalidCredentialsError`: auth-service said the password is not the user's.
- :class:`~user_service.accounts.UsernameTakenError`: an account for the name exists.
- :class:`IdempotencyKeyInProgressError`: another request holds the key.
- :class:`IdempotencyKeyMismatchError`: the key was used for another username.
- :class:`ClientGoneError`: the client went away during the credential check.
- :class:`~user_service.auth_client.AuthServiceError` (among them
  :class:`~user_service.auth_client.AuthClientRejectedError`: auth-service
  refused user-service's own client token, so the user's credentials were
  never checked) and :class:`~user_service.accounts.AccountStoreUnavailableError`
  pass through from the collaborators.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from user_service.accounts import (
    Claimed,
    Completed,
    IdempotencyClaim,
    InFlight,
    Mismatch,
    UsernameTakenError,
)

if TYPE_CHECKING:
    from user_service.accounts import AccountStore, UserAccount
    from user_service.auth_client import CredentialsVerifier

__all__ = [
    "ClientGoneError",
    "IdempotencyKeyInProgressError",
    "IdempotencyKeyMismatchError",
    "InvalidCredentialsError",
    "Registered",
    "RegistrationError",
    "UsernameTakenError",
    "idempotency_claim",
    "register",
]


class RegistrationError(Exception):
    """A sign-up created no account, for a reason of its own (not a failing collaborator)."""


class InvalidCredentialsError(RegistrationError):
    """auth-service said that the password is not the user's."""


class IdempotencyKeyInProgressError(RegistrationError):
    """Another request holds the idempotency key and has not finished; retrying later is safe."""


class IdempotencyKeyMismatchError(RegistrationError):
    """The idempotency key was used for a request with another username."""


class ClientGoneError(RegistrationError):
    """The client went away before its credentials were checked; nothing was created."""


@dataclass(frozen=True, slots=True)
class Registered:
    """A sign-up that has an account.

    Attributes:
        account: The account.
        replayed: Whether an earlier request with the same idempotency key created it.
    """

    account: UserAccount
    replayed: bool


def idempotency_claim(key: str, username: str) -> IdempotencyClaim:
    """Return the claim a request for ``username`` makes on ``key``.

    The fingerprint covers the canonical username only: a digest of the
    password would be a weak password hash, kept by a service that owns no
    passwords.
    """
    return IdempotencyClaim(key, hashlib.sha256(username.encode()).hexdigest())


async def register(  # noqa: PLR0913 - the collaborators, the request, and its client's fate
    verifier: CredentialsVerifier,
    store: AccountStore,
    username: str,
    password: str,
    key: str | None = None,
    *,
    gone: asyncio.Future[None] | None = None,
) -> Registered:
    """Create an account once ``verifier`` has said the credentials are valid.

    With an idempotency ``key``, the key is claimed first: a key whose request
    created an account replays it without asking ``verifier``. A sign-up that
    fails, whatever the reason, frees the key, so that a retry runs afresh.

    Args:
        verifier: Checks the credentials.
        store: Keeps the accounts and the keys.
        username: The canonical username.
        password: The password, handed to ``verifier`` only.
        key: The request's idempotency key, if any.
        gone: Completes when the client has gone away; the credential check
            is then given up, so auth-service hashes nothing for it.

    Returns:
        The account, and whether an earlier request with ``key`` created it.

    Raises:
        InvalidCredentialsError: If ``verifier`` said invalid.
        UsernameTakenError: If an account for ``username`` exists.
        IdempotencyKeyInProgressError: If another request holds ``key``.
        IdempotencyKeyMismatchError: If ``key`` was used for another username.
        ClientGoneError: If ``gone`` completed during the credential check.
    """
    claim = None
    if key is not None:
        claim = idempotency_claim(key, username)
        match await store.claim(claim):
            case Completed(account):
                return Registered(account, replayed=True)
            case InFlight():
                raise IdempotencyKeyInProgressError
            case Mismatch():
                raise IdempotencyKeyMismatchError
            case Claimed():
                pass
    try:
        account = await _verify_then_create(
            verifier, store, username, password, claim=claim, gone=gone
        )
    except BaseException:
        if claim is not None:
            await store.release(claim)
        raise
    return Registered(account, replayed=False)


async def _verify_then_create(  # noqa: PLR0913 - register's arguments, and the claim made
    verifier: CredentialsVerifier,
    store: AccountStore,
    username: str,
    password: str,
    *,
    claim: IdempotencyClaim | None,
    gone: asyncio.Future[None] | None,
) -> UserAccount:
    check = verifier.validate_credentials(username, password)
    if gone is None:
        valid = await check
    else:
        verdict = asyncio.ensure_future(check)
        watched: set[asyncio.Future[Any]] = {verdict, gone}
        await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        if not verdict.done():
            verdict.cancel()
            raise ClientGoneError
        valid = verdict.result()
    if not valid:
        raise InvalidCredentialsError
    return await store.create(username, idempotency=claim)
