"""Load interactions and wellbeing observations from CSV files or pandas DataFrames.

Contract: ``validate_*`` return a clean frame (UTC timestamps, float weights and scores, pairs normalised so
``person_a < person_b``) or raise :class:`OrgDataInvalid` naming the first offending data row (1-based) and
column; nothing is written. Naive timestamps are read as UTC. ``weight`` is optional (default 1.0) and must be a
finite number > 0; ``kind`` is one of meeting, message, coedit; ``burnout_score`` lies in [0, 1].
``insert_*`` add rows through the caller's session and never commit.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, TypeAlias

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from saferails.orggraph.errors import OrgDataInvalid
from saferails.orggraph.tables import INTERACTION_KINDS, Interaction, Wellbeing

Source: TypeAlias = str | Path | IO[str] | pd.DataFrame
INTERACTION_COLUMNS = ("kind", "person_a", "person_b", "occurred_at", "weight")
WELLBEING_COLUMNS = ("person", "observed_at", "burnout_score")
_BATCH = 5000


def _frame(source: Source) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source.reset_index(drop=True)
    try:
        return pd.read_csv(source, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise OrgDataInvalid(f"not a readable CSV file: {exc}", column="*") from None


def _refuse(frame: pd.DataFrame, bad: pd.Series, column: str, problem: str) -> None:
    if bool(bad.any()):
        positions = np.flatnonzero(bad.to_numpy())
        first = int(positions[0])
        raise OrgDataInvalid(problem, column=column, row=first + 1, value=frame[column].iloc[first],
                             bad_rows=len(positions))


def _require(frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    for column in columns:
        if column not in frame.columns:
            raise OrgDataInvalid("required column is missing", column=column)


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    values = frame[column].astype("string").str.strip()
    _refuse(frame, values.isna() | (values == ""), column, "must not be empty")
    _refuse(frame, values.str.len() > 100, column, "longer than 100 characters")
    return values.astype(str)


def _timestamps(frame: pd.DataFrame, column: str) -> pd.Series:
    parsed = pd.to_datetime(frame[column], errors="coerce", utc=True, format="mixed")
    _refuse(frame, parsed.isna(), column, "not a timestamp (use ISO 8601, e.g. 2026-11-22T09:00:00Z)")
    return parsed


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    parsed = pd.to_numeric(frame[column], errors="coerce").astype(float)
    _refuse(frame, ~np.isfinite(parsed), column, "not a finite number")
    return parsed


def validate_interactions(source: Source) -> pd.DataFrame:
    """A clean interactions frame with columns ``INTERACTION_COLUMNS`` (see the module contract)."""
    frame = _frame(source)
    _require(frame, ("kind", "person_a", "person_b", "occurred_at"))
    if "weight" not in frame.columns:
        frame = frame.assign(weight=1.0)
    kind = frame["kind"].astype("string").str.strip().str.lower()
    _refuse(frame, ~kind.isin(INTERACTION_KINDS).fillna(False).astype(bool), "kind",
            f"must be one of {', '.join(INTERACTION_KINDS)}")
    a, b = _text(frame, "person_a"), _text(frame, "person_b")
    _refuse(frame, a == b, "person_b", "an interaction needs two different people")
    when = _timestamps(frame, "occurred_at")
    weight = _numbers(frame, "weight")
    _refuse(frame, weight <= 0, "weight", "must be greater than 0")
    low, high = np.minimum(a.to_numpy(), b.to_numpy()), np.maximum(a.to_numpy(), b.to_numpy())
    return pd.DataFrame({"kind": kind.astype(str), "person_a": low, "person_b": high, "occurred_at": when,
                         "weight": weight})


def validate_wellbeing(source: Source) -> pd.DataFrame:
    """A clean wellbeing frame with columns ``WELLBEING_COLUMNS``; duplicates of (person, observed_at) refused."""
    frame = _frame(source)
    _require(frame, WELLBEING_COLUMNS)
    person = _text(frame, "person")
    when = _timestamps(frame, "observed_at")
    score = _numbers(frame, "burnout_score")
    _refuse(frame, (score < 0) | (score > 1), "burnout_score", "must lie between 0 and 1")
    clean = pd.DataFrame({"person": person, "observed_at": when, "burnout_score": score})
    _refuse(frame, clean.duplicated(["person", "observed_at"]), "observed_at",
            "a second observation for the same person and time")
    return clean


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].dt.to_pydatetime()
    records: list[dict[str, Any]] = out.to_dict("records")
    return records


def _insert(session: Session, model: type[Any], frame: pd.DataFrame) -> int:
    records = _records(frame)
    for start in range(0, len(records), _BATCH):
        session.execute(sa.insert(model), records[start:start + _BATCH])
    return len(records)


def insert_interactions(session: Session, source: Source) -> int:
    """Validate then insert; returns the number of rows. Never commits."""
    return _insert(session, Interaction, validate_interactions(source))


def insert_wellbeing(session: Session, source: Source) -> int:
    """Validate then insert; returns the number of rows. Never commits."""
    return _insert(session, Wellbeing, validate_wellbeing(source))
