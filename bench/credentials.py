"""auth-service's credentials for a load: thousands of users, one password, one real hash.

Every sign-up on the real path costs one argon2id check in auth-service, and
each benchmarked sign-up needs a user auth-service knows, with a password
that matches. Hashing a password per user would take minutes for thousands
of them, so :class:`Credentials` adds one user with ``auth-service users add``
(the service's own hashing, parameters and password normalisation), with
the password every load generator sends (:data:`bench.pyload.PASSWORD`), then
gives its hash to every other username with plain SQL, in one transaction,
before the service starts. The raw argon2id rate of the machine is measured on
that same hash (:func:`bench.raw_rate.raw_rate`), so it has the very parameters
the service checks with.

The SQL touches only ``credentials (username, password_hash)``: the table
auth-service has had since its first release; its other columns have defaults.
"""

from __future__ import annotations

import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.support.processes import venv_command

from bench.commands import auth_environment
from bench.pyload import PASSWORD

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

TEMPLATE_USER = "benchtemplate"
ADD_USER_TIMEOUT_SECONDS = 60.0
ARGON2_PREFIX = "$argon2"


@dataclass(frozen=True)
class Credentials:
    """auth-service's SQLite file, seeded with users that share one password.

    Attributes:
        database: The file.
        password_hash: The hash every user has, as auth-service made it.
    """

    database: Path
    password_hash: str

    @classmethod
    def create(cls, database: Path, log_path: Path) -> Credentials:
        """Create the file with one user added by ``auth-service users add``.

        Args:
            database: The file to create; replaced if it exists.
            log_path: Where the command's output goes.

        Returns:
            The credentials, holding that one user.

        Raises:
            RuntimeError: If the command failed or stored no argon2 hash.
        """
        for stale in database.parent.glob(database.name + "*"):
            stale.unlink()
        database.parent.mkdir(parents=True, exist_ok=True)
        added = subprocess.run(
            [venv_command("auth-service"), "users", "add", TEMPLATE_USER],
            input=f"{PASSWORD}\n",
            env=auth_environment(database),
            capture_output=True,
            text=True,
            check=False,
            timeout=ADD_USER_TIMEOUT_SECONDS,
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(added.stdout + added.stderr, encoding="utf-8")
        if added.returncode != 0:
            msg = f"auth-service users add exited with {added.returncode}: {added.stderr.strip()}"
            raise RuntimeError(msg)
        with closing(sqlite3.connect(database)) as connection:
            row = connection.execute(
                "SELECT password_hash FROM credentials WHERE username = ?", (TEMPLATE_USER,)
            ).fetchone()
        if row is None or not str(row[0]).startswith(ARGON2_PREFIX):
            msg = "auth-service users add stored no argon2 hash"
            raise RuntimeError(msg)
        return cls(database, str(row[0]))

    @property
    def parameters(self) -> str:
        """The argon2 variant and parameters of the hash, e.g. ``argon2id m=19456,t=2,p=1``."""
        parts = self.password_hash.split("$")
        return f"{parts[1]} {parts[3]}" if len(parts) > 3 else parts[1]  # noqa: PLR2004

    def add(self, usernames: Iterable[str]) -> int:
        """Give every username the shared hash, in one transaction.

        Args:
            usernames: Canonical usernames (lowercase letters and digits), new to the file.

        Returns:
            How many were added.
        """
        with closing(sqlite3.connect(self.database, isolation_level=None)) as connection:
            before = connection.total_changes
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(
                "INSERT INTO credentials (username, password_hash) VALUES (?, ?)",
                ((username, self.password_hash) for username in usernames),
            )
            connection.execute("COMMIT")
            # The service opens the file afresh: fold the WAL into it first.
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return connection.total_changes - before
