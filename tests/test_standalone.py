"""The repository stands alone: no test or module reads files from a `shared` directory beside the clone."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Spelled so that this file does not match itself.
_OUTSIDE = re.compile(r"""\.\./shared|parents?(\[\d+\])?\s*/\s*["']shared["']|/work[/]shared""")


def test_nothing_reads_a_shared_sibling_directory() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for top in ("bridge", "tests")
        for path in sorted((REPO / top).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if _OUTSIDE.search(line)
    ]
    assert not offenders, "tests/fixtures holds the project's own fixtures:\n" + "\n".join(offenders)
