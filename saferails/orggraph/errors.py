"""Typed errors of the org graph (subclasses of the one hierarchy in ``saferails.errors``)."""

from __future__ import annotations

from saferails.errors import InvalidInput


class OrgDataInvalid(InvalidInput):
    """Interaction or wellbeing data refused at load time. ``row`` is the 1-based data row (the CSV line is
    ``row + 1`` with its header), ``column`` the offending column; ``bad_rows`` counts every row with the
    same problem. Nothing is written."""

    code = "ORG_DATA_INVALID"

    def __init__(self, problem: str, *, column: str, row: int | None = None, value: object = None,
                 bad_rows: int = 1) -> None:
        where = f"row {row}, column {column!r}" if row is not None else f"column {column!r}"
        more = f" ({bad_rows} rows affected)" if bad_rows > 1 else ""
        super().__init__(f"{where}: {problem}{more}", row=row, column=column, value=None if value is None
                         else str(value), bad_rows=bad_rows)
