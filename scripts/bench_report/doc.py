"""The report being written: its Markdown lines and the goals its sections
judged (listed together at the end)."""

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Goal:
    name: str
    ok: bool | None  # None: not judged (a number is missing)
    how: str  # the measured value, as the goals table shows it


@dataclass
class Doc:
    lines: list[str] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)

    def w(self, line: str = "") -> None:
        self.lines.append(line)

    def goal(self, name: str, ok: bool | None, how: str) -> None:
        self.goals.append(Goal(name, ok, how))

    def header(self, *cells: str) -> None:
        """A table's header row and its separator."""
        self.row(*cells)
        self.w("|" + "---|" * len(cells))

    def row(self, *cells: str) -> None:
        self.w(table_row(cells))

    def text(self) -> str:
        return "\n".join(self.lines)


def table_row(cells: Sequence[str]) -> str:
    """`| a | b |`; an empty cell is `| |`."""
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"
