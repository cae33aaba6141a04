"""Durations: parsing, words, and calendar-aware addition with day clamping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailhygiene.policy import Duration, DurationUnit
from mailhygiene.policy.durations import MAX_YEARS

STOCKHOLM = ZoneInfo("Europe/Stockholm")


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [
        ("180d", 180, DurationUnit.DAYS),
        ("2w", 2, DurationUnit.WEEKS),
        ("18m", 18, DurationUnit.MONTHS),
        ("7y", 7, DurationUnit.YEARS),
        (" 30d ", 30, DurationUnit.DAYS),
        ("0d", 0, DurationUnit.DAYS),
    ],
)
def test_parse_accepts_the_four_units(text: str, amount: int, unit: DurationUnit) -> None:
    assert Duration.parse(text) == Duration(amount, unit)


@pytest.mark.parametrize(
    "text", ["", "d", "180", "180 d", "7Y", "1.5y", "-3d", "3x", "7 years", "٣d", "1y2m"]
)
def test_parse_rejects_anything_else_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a duration like 180d, 2w, 18m or 7y"):
        Duration.parse(text)


def test_negative_and_too_long_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Duration(-1, DurationUnit.DAYS)
    with pytest.raises(ValueError, match=f"maximum of {MAX_YEARS} years"):
        Duration.parse(f"{MAX_YEARS + 1}y")
    assert Duration.parse(f"{MAX_YEARS}y").amount == MAX_YEARS


def test_str_and_describe() -> None:
    assert str(Duration.parse("7y")) == "7y"
    assert Duration.parse("7y").describe() == "7 years"
    assert Duration.parse("1d").describe() == "1 day"
    assert Duration.parse("1m").describe() == "1 month"
    assert Duration.parse("2w").describe() == "2 weeks"


@pytest.mark.parametrize(
    ("start", "text", "expected"),
    [
        (datetime(2024, 1, 31, 12, tzinfo=UTC), "1m", datetime(2024, 2, 29, 12, tzinfo=UTC)),
        (datetime(2023, 1, 31, 12, tzinfo=UTC), "1m", datetime(2023, 2, 28, 12, tzinfo=UTC)),
        (datetime(2024, 2, 29, tzinfo=UTC), "1y", datetime(2025, 2, 28, tzinfo=UTC)),
        (datetime(2024, 2, 29, tzinfo=UTC), "4y", datetime(2028, 2, 29, tzinfo=UTC)),
        (datetime(2024, 8, 31, tzinfo=UTC), "18m", datetime(2026, 2, 28, tzinfo=UTC)),
        (datetime(2024, 11, 15, tzinfo=UTC), "3m", datetime(2025, 2, 15, tzinfo=UTC)),
        (datetime(2024, 3, 2, tzinfo=UTC), "180d", datetime(2024, 8, 29, tzinfo=UTC)),
        (datetime(2024, 3, 2, tzinfo=UTC), "2w", datetime(2024, 3, 16, tzinfo=UTC)),
    ],
)
def test_add_to_is_calendar_aware(start: datetime, text: str, expected: datetime) -> None:
    assert Duration.parse(text).add_to(start) == expected


def test_add_to_keeps_the_local_wall_clock_across_daylight_saving() -> None:
    # 2024-03-31 is the spring-forward day in Stockholm: one calendar day is 23 hours.
    start = datetime(2024, 3, 30, 12, tzinfo=STOCKHOLM)
    end = Duration.parse("1d").add_to(start)
    assert end == datetime(2024, 3, 31, 12, tzinfo=STOCKHOLM)
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=23)


def test_add_to_beyond_year_9999_raises_overflow() -> None:
    with pytest.raises(OverflowError):
        Duration.parse("1y").add_to(datetime(9999, 6, 1, tzinfo=UTC))
    with pytest.raises(OverflowError):
        Duration.parse("30d").add_to(datetime(9999, 12, 15, tzinfo=UTC))


durations = st.builds(
    Duration,
    st.integers(min_value=0, max_value=MAX_YEARS),
    st.sampled_from(list(DurationUnit)),
)
dates = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=300)
@given(durations)
def test_str_round_trips_through_parse(duration: Duration) -> None:
    assert Duration.parse(str(duration)) == duration


@settings(max_examples=300)
@given(dates, st.integers(min_value=0, max_value=1200), st.integers(min_value=0, max_value=1200))
def test_more_months_never_end_sooner(start: datetime, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert Duration(low, DurationUnit.MONTHS).add_to(start) <= Duration(
        high, DurationUnit.MONTHS
    ).add_to(start)


@settings(max_examples=300)
@given(dates, st.integers(min_value=0, max_value=1200))
def test_month_addition_lands_in_the_right_month_and_clamps_the_day(
    start: datetime, months: int
) -> None:
    end = Duration(months, DurationUnit.MONTHS).add_to(start)
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == months
    assert end.day == start.day or (end.day < start.day and (end + timedelta(days=1)).day == 1)
    assert end.time() == start.time()


@settings(max_examples=300)
@given(dates, st.integers(min_value=0, max_value=MAX_YEARS))
def test_years_are_twelve_months_and_weeks_seven_days(start: datetime, n: int) -> None:
    assert Duration(n, DurationUnit.YEARS).add_to(start) == Duration(
        12 * n, DurationUnit.MONTHS
    ).add_to(start)
    assert Duration(n, DurationUnit.WEEKS).add_to(start) == Duration(
        7 * n, DurationUnit.DAYS
    ).add_to(start)
