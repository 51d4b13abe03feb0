"""Accounts and where they are kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class UserAccount:
    """A stored account. It never holds a password.

    Attributes:
        id: Identifier given by the store.
        username: The account's username.
    """

    id: int
    username: str


class AccountStore(Protocol):
    """Where accounts are kept."""

    def create(self, username: str) -> UserAccount:
        """Create and store a new account.

        Args:
            username: Username for the new account.

        Returns:
            The created account.
        """
        ...

    def reset(self) -> None:
        """Remove every stored account."""
        ...


class InMemoryAccountStore:
    """Small in-memory store: accounts last as long as the process."""

    def __init__(self) -> None:
        """Initialise an empty store whose first id is 1."""
        self._next_id = 1
        self._accounts: dict[int, UserAccount] = {}

    def create(self, username: str) -> UserAccount:
        """Create and store a new account.

        Args:
            username: Username for the new account.

        Returns:
            The created account.
        """
        account = UserAccount(id=self._next_id, username=username)
        self._accounts[account.id] = account
        self._next_id += 1
        return account

    def get(self, account_id: int) -> UserAccount | None:
        """Return the account with ``account_id``, or ``None``."""
        return self._accounts.get(account_id)

    def reset(self) -> None:
        """Remove every stored account and start ids at 1 again."""
        self._next_id = 1
        self._accounts.clear()
