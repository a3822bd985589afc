"""Plain-text tables and the targets the measurements are held to."""
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

OK = "OK"
OVER = "OVER"
DIFFERS = "DIFFERS"
FAILED = "FAILED"


def number(value: float, decimals: int = 0) -> str:
    """1234.5 -> '1,234.50' (decimals=2); integers keep no decimals."""
    return "{:,.{}f}".format(value, decimals)


def seconds(value: float) -> str:
    return "{:,.2f} s".format(value)


def millis(value: float) -> str:
    return "{:,.2f} ms".format(value * 1000)


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[object]],
          notes: Sequence[str] = (), align: str = "") -> str:
    """A table with a title, a rule under the headers and aligned columns.
    `align` has one letter per column, l or r; by default the first column
    is left-aligned and the others right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(row: Sequence[str]) -> str:
        parts = []
        for index, cell in enumerate(row):
            leftward = align[index] == "l" if index < len(align) else index == 0
            parts.append(cell.ljust(widths[index]) if leftward else cell.rjust(widths[index]))
        return "  ".join(parts).rstrip()

    out = [title, "=" * len(title), line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in cells)
    if notes:
        out.append("")
        out.extend(notes)
    return "\n".join(out) + "\n"


@dataclass
class Target:
    """One thing a run is held to: `measured` against `wanted`."""
    what: str
    wanted: str
    measured: str
    met: bool
    miss: str = OVER

    @property
    def verdict(self) -> str:
        return OK if self.met else self.miss


class Targets:
    def __init__(self):
        self.items: List[Target] = []

    def at_most(self, what: str, measured: float, limit: float, decimals: int = 0) -> Target:
        shown = number(limit, decimals if limit != int(limit) else 0)
        target = Target(what, "<= " + shown, number(measured, decimals), measured <= limit)
        self.items.append(target)
        return target

    def equal(self, what: str, measured: str, wanted: str, met: bool) -> Target:
        target = Target(what, wanted, measured, met, miss=DIFFERS)
        self.items.append(target)
        return target

    def failed(self, what: str, why: str) -> Target:
        target = Target(what, "completes", why, False, miss=FAILED)
        self.items.append(target)
        return target

    @property
    def missed(self) -> List[Target]:
        return [t for t in self.items if not t.met]

    def render(self) -> str:
        return table("Targets", ("target", "wanted", "measured", "verdict"),
                     [(t.what, t.wanted, t.measured, t.verdict) for t in self.items], align="lrrl")


def verdict_of(target: Optional[Target]) -> str:
    return "-" if target is None else target.verdict
