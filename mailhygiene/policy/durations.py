"""Retention periods: ``180d``, ``2w``, ``18m``, ``7y`` and calendar-aware addition.

Days and weeks add whole calendar days; months and years move the calendar month and
clamp the day to the end of a shorter month (31 Jan + 1m = 28/29 Feb; 29 Feb 2024 + 1y =
28 Feb 2025). Arithmetic happens on the wall clock of the datetime's own time zone, so
pass a datetime in the policy time zone to get "the same local time N days later".
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

__all__ = ["DURATION_HINT", "MAX_YEARS", "Duration", "DurationUnit"]

MAX_YEARS = 100
"""Longest retention we accept; keeps every computed date inside ``datetime``'s range."""

_DURATION = re.compile(r"([0-9]{1,6})([dwmy])")
DURATION_HINT = "expected a duration like 180d, 2w, 18m or 7y (d=days, w=weeks, m=months, y=years)"


class DurationUnit(StrEnum):
    DAYS = "d"
    WEEKS = "w"
    MONTHS = "m"
    YEARS = "y"


_WORDS = {
    DurationUnit.DAYS: ("day", "days"),
    DurationUnit.WEEKS: ("week", "weeks"),
    DurationUnit.MONTHS: ("month", "months"),
    DurationUnit.YEARS: ("year", "years"),
}
# Upper bound per unit, all roughly MAX_YEARS.
_LIMITS = {
    DurationUnit.DAYS: MAX_YEARS * 366,
    DurationUnit.WEEKS: MAX_YEARS * 53,
    DurationUnit.MONTHS: MAX_YEARS * 12,
    DurationUnit.YEARS: MAX_YEARS,
}


@dataclass(frozen=True, slots=True)
class Duration:
    """A retention period: a non-negative whole number of days, weeks, months or years."""

    amount: int
    unit: DurationUnit

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError(f"duration amount must be an int, got {self.amount!r}")
        object.__setattr__(self, "unit", DurationUnit(self.unit))
        if self.amount < 0:
            raise ValueError(f"a duration cannot be negative, got {self.amount}{self.unit}")
        if self.amount > _LIMITS[self.unit]:
            raise ValueError(f"{self} is longer than the supported maximum of {MAX_YEARS} years")

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse ``"180d"``, ``"2w"``, ``"18m"`` or ``"7y"``; raise ``ValueError`` otherwise."""
        match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"{DURATION_HINT}, got {text!r}")
        return cls(int(match[1]), DurationUnit(match[2]))

    def __str__(self) -> str:
        return f"{self.amount}{self.unit.value}"

    def describe(self) -> str:
        """The period in words: ``"7 years"``, ``"1 day"``."""
        singular, plural = _WORDS[self.unit]
        return f"{self.amount} {singular if self.amount == 1 else plural}"

    def add_to(self, dt: datetime) -> datetime:
        """Return ``dt`` moved forward by this period on its own wall clock.

        Raises ``OverflowError`` when the result falls outside ``datetime``'s range.
        """
        if self.unit is DurationUnit.DAYS:
            return dt + timedelta(days=self.amount)
        if self.unit is DurationUnit.WEEKS:
            return dt + timedelta(weeks=self.amount)
        months = self.amount * 12 if self.unit is DurationUnit.YEARS else self.amount
        return _add_months(dt, months)


def _add_months(dt: datetime, months: int) -> datetime:
    year, month0 = divmod(dt.year * 12 + dt.month - 1 + months, 12)
    if not 1 <= year <= 9999:
        raise OverflowError(f"date value out of range: {dt.isoformat()} + {months} months")
    day = min(dt.day, calendar.monthrange(year, month0 + 1)[1])
    return dt.replace(year=year, month=month0 + 1, day=day)
