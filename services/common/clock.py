"""Time, injectable: services read the time through a Clock so tests can move it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def as_utc(dt: datetime) -> datetime:
    """dt as an aware UTC datetime: SQLite hands stored datetimes back naive (they are UTC)."""
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class Clock:
    """Wall-clock time as timezone-aware UTC datetimes."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock(Clock):
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
