"""README.md's tables, read from README.md itself.

A test that pins a table against the code must read the table the user reads:
a copy inside the test would pin the code and let the README drift.
"""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _cells(line: str) -> list[str]:
    return [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]


def table_under(heading: str) -> list[dict[str, str]]:
    """The first table in the section titled `heading`, one dict per row keyed by the header cells (no backticks)."""
    lines = README.read_text().splitlines()
    titles = [i for i, line in enumerate(lines) if line.startswith("#") and line.lstrip("#").strip() == heading]
    assert len(titles) == 1, f"README.md has {len(titles)} sections titled {heading!r}"
    level = len(lines[titles[0]]) - len(lines[titles[0]].lstrip("#"))
    table: list[str] = []
    for line in lines[titles[0] + 1 :]:
        if line.startswith("#") and len(line) - len(line.lstrip("#")) <= level:
            break  # the section ended
        if line.startswith("|"):
            table.append(line)
        elif table:
            break  # the first table ended
    assert len(table) >= 3, f"no table under {heading!r} in README.md"
    header = _cells(table[0])
    rows = [_cells(line) for line in table[2:]]
    assert all(len(row) == len(header) for row in rows), f"a row of the table under {heading!r} has a wrong cell count"
    return [dict(zip(header, row, strict=True)) for row in rows]
