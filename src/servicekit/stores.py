"""What a store kept in a database has from it: opening, closing and the readiness check."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable


class Database(Protocol):
    """What a store keeps: a :class:`~servicekit.sqlite.SqliteDatabase`, or the PostgreSQL one."""

    async def open(self) -> None:
        """Connect, and create or migrate the schema."""

    async def close(self) -> None:
        """Release the connections."""

    async def ping(self, query: str) -> None:
        """Raise the store's error unless ``query`` is answered in time."""


_D = TypeVar("_D", bound=Database)


class DatabaseBacked(Generic[_D]):
    """Gives a store the ``open``, ``close`` and ``ping`` of the database it keeps.

    A store sets ``_database`` when it is made, and names in ``PING_QUERY`` a
    query that reads its schema, so that ``ping`` fails when the tables are gone.
    """

    PING_QUERY: ClassVar[str]
    _database: _D

    async def open(self) -> None:
        """Connect, and create or migrate the schema; does nothing if already open."""
        await self._database.open()

    async def close(self) -> None:
        """Release the connections; the store may be opened again."""
        await self._database.close()

    async def ping(self) -> None:
        """Raise the store's unavailable error unless its tables can be read in time."""
        await self._database.ping(self.PING_QUERY)


def refuse_newer_schema(found: int, known: int, unavailable: Callable[[str], Exception]) -> None:
    """Raise ``unavailable`` if the database's schema is newer than this code knows.

    Args:
        found: The schema version the database holds.
        known: The version this code's migrations reach.
        unavailable: Makes the store's error from a message.
    """
    if found > known:
        msg = f"the database has schema version {found}; this code knows {known}"
        raise unavailable(msg)
