"""One series table and one counter rule for the whole process (see table.py and counter.py)."""

from bridge.series.table import Attrs, Series, SeriesTable, memo_fill, new_slot, shared

__all__ = ["Attrs", "Series", "SeriesTable", "memo_fill", "new_slot", "shared"]
