"""A goal of the benchmarks, and how a run did against it: one row of the report's goal table."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Goal:
    """A goal and how the run did.

    Attributes:
        name: What is measured.
        target: The goal.
        measured: What the run measured, for a person to read.
        met: Whether the goal was met; ``None`` if it could not be measured.
    """

    name: str
    target: str
    measured: str
    met: bool | None

    @property
    def verdict(self) -> str:
        """``met``, ``missed`` or ``not measured``."""
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]
