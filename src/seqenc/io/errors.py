"""InputError: one bad input, located by file, line (or row) and field."""

from __future__ import annotations


class InputError(Exception):
    """Bad input data. ``file``/``line``/``field`` locate it; any of them may be None.

    ``unit`` is "line" for line-based formats (txt, jsonl, csv, tsv) and "row" for parquet,
    where there are no lines.
    """

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        unit: str = "line",
    ):
        self.reason = reason
        self.file = file
        self.line = line
        self.field = field
        self.unit = unit
        super().__init__(str(self))

    @property
    def location(self) -> str:
        """``FILE:LINE`` (or ``FILE: row N``), the way compilers and grep print places."""
        if self.file is None:
            return ""
        if self.line is None:
            return self.file
        return (
            f"{self.file}:{self.line}" if self.unit == "line" else f"{self.file}: row {self.line}"
        )

    def __str__(self) -> str:
        parts = [p for p in (self.location, f"field {self.field!r}" if self.field else "") if p]
        return ": ".join([*parts, self.reason])

    def __reduce__(self):  # keep the keyword-only attributes through pickling
        return (_rebuild, (self.reason, self.file, self.line, self.field, self.unit))


def _rebuild(reason, file, line, field, unit) -> InputError:
    return InputError(reason, file=file, line=line, field=field, unit=unit)
