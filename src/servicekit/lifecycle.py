"""Objects opened before use and closed after, with ``open()``/``close()`` or ``async with``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from types import TracebackType


class Openable:
    """Gives ``async with`` to a class that defines ``open()`` and ``close()``.

    The block opens the object and closes it when it ends, however it ends.
    """

    async def open(self) -> None:
        """Open the object; subclasses define what that means."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the object; subclasses define what that means."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        """Open the object for the ``async with`` block."""
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the object at the end of the ``async with`` block."""
        await self.close()
