"""Tests for nself_jobs.cron: parsing, validation and fire times across DST changes."""

import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nself_jobs.cron import NoOccurrence, parse, preview
from nself_jobs.errors import ValidationError

UTC = timezone.utc


def utc(text):
    """Parse an ISO 8601 UTC time such as ``2026-11-01T08:00`` into an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def utc_list(*texts):
    return [utc(text) for text in texts]


def fire_times(expression, zone, reference, count):
    return parse(expression, zone).next_n(utc(reference), count)


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

INVALID_EXPRESSIONS = [
    ("90 * * * *", "cron.minute"),
    ("60 * * * *", "cron.minute"),
    ("0 24 1 12 0", "cron.hour"),
    ("0 0 0 * *", "cron.day_of_month"),
    ("0 0 32 1 *", "cron.day_of_month"),
    ("0 0 1 13 *", "cron.month"),
    ("0 0 * * 8", "cron.day_of_week"),
    ("*/0 * * * *", "cron.minute"),
    ("0 0 * *", "cron"),
    ("0 0 * * * * *", "cron"),
    ("@reboot", "cron"),
    ("@fortnightly", "cron"),
    ("", "cron"),
    ("0 1 0/10 * *", "cron.day_of_month"),
    ("*/60 * * * *", "cron.minute"),
    ("*/90 * * * *", "cron.minute"),
    ("0 */24 * * *", "cron.hour"),
    ("0 0 */31 * *", "cron.day_of_month"),
    ("0 0 1 */12 *", "cron.month"),
    ("0 0 * * */7", "cron.day_of_week"),
    ("60 0 * * * *", "cron.second"),
    ("30-10 * * * *", "cron.minute"),
    ("0 0 * * fri-mon", "cron.day_of_week"),
    ("0 0 30 2 *", "cron.day_of_month"),
    ("0 0 31 4 *", "cron.day_of_month"),
    ("0 0 30,31 2 *", "cron.day_of_month"),
    ("0 0 1,,2 * *", "cron.day_of_month"),
    ("0 0 * * 6#6", "cron.day_of_week"),
    ("0 0 * * 6#0", "cron.day_of_week"),
    ("0 0 * * L", "cron.day_of_week"),
    ("0 0 15W * *", "cron.day_of_month"),
    ("0 0 * * monday", "cron.day_of_week"),
    ("0 0 * january *", "cron.month"),
    ("? * * * *", "cron.minute"),
    ("*-5 * * * *", "cron.minute"),
    ("-5 * * * *", "cron.minute"),
]


@pytest.mark.parametrize(("expression", "field"), INVALID_EXPRESSIONS)
def test_parse_rejects_invalid_expression(expression, field):
    with pytest.raises(ValidationError) as raised:
        parse(expression)

    assert raised.value.field == field


def test_parse_rejects_reboot_with_reason():
    with pytest.raises(ValidationError) as raised:
        parse("@reboot")

    assert "not supported: schedules fire on time, not at start-up" in raised.value.message


def test_parse_rejects_wraparound_range():
    with pytest.raises(ValidationError) as raised:
        parse("30-10 * * * *")

    assert "wraparound" in raised.value.message
    assert "30-59,0-10" in raised.value.message


def test_parse_rejects_large_step_with_limit():
    with pytest.raises(ValidationError) as raised:
        parse("*/60 * * * *")

    assert "from 1 to 59" in raised.value.message


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *", "0 0 */10 2 6#4"])
def test_parse_rejects_never_firing_date_quickly(expression):
    started = time.perf_counter()
    with pytest.raises(ValidationError) as raised:
        parse(expression)
    elapsed = time.perf_counter() - started

    assert raised.value.field in ("cron.day_of_month", "cron.day_of_week")
    assert "never fire" in raised.value.message
    assert elapsed < 1.0


def test_parse_accepts_rare_but_possible_dates():
    # A fifth Saturday in February needs a leap year whose February starts on a Saturday.
    schedule = parse("0 0 * 2 6#5")

    assert schedule.next(utc("2021-01-01T00:00")) == utc("2048-02-29T00:00")


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../etc/passwd", "Europe/", None, 5])
def test_parse_rejects_invalid_timezone(zone):
    with pytest.raises(ValidationError) as raised:
        parse("0 0 * * *", zone)

    assert raised.value.field == "timezone"


@pytest.mark.parametrize("expression", [None, 5, ["0", "0", "*", "*", "*"]])
def test_parse_rejects_non_string_expression(expression):
    with pytest.raises(ValidationError) as raised:
        parse(expression)

    assert raised.value.field == "cron"


# ---------------------------------------------------------------------------
# Syntax
# ---------------------------------------------------------------------------


def test_names_are_case_insensitive():
    reference = utc("2026-01-01T00:00")
    expected = parse("0 0 * 1,3 1-5").next_n(reference, 10)

    assert parse("0 0 * JAN,Mar MON-fri").next_n(reference, 10) == expected
    assert parse("0 0 * jan,mar mon-fri").next_n(reference, 10) == expected


def test_sunday_is_both_zero_and_seven():
    reference = utc("2026-01-01T00:00")
    expected = utc_list("2026-01-04T00:00", "2026-01-11T00:00", "2026-01-18T00:00")

    assert parse("0 0 * * 0").next_n(reference, 3) == expected
    assert parse("0 0 * * 7").next_n(reference, 3) == expected
    assert parse("0 0 * * sun").next_n(reference, 3) == expected


def test_weekday_range_to_seven_includes_sunday():
    schedule = parse("0 0 * * 5-7")

    fires = schedule.next_n(utc("2026-01-05T00:00"), 3)

    assert fires == utc_list("2026-01-09T00:00", "2026-01-10T00:00", "2026-01-11T00:00")


def test_value_with_step_runs_to_field_end():
    schedule = parse("5/20 * * * *")

    fires = schedule.next_n(utc("2026-01-01T00:00"), 4)

    assert fires == utc_list("2026-01-01T00:05", "2026-01-01T00:25", "2026-01-01T00:45", "2026-01-01T01:05")


def test_question_mark_means_any_day():
    reference = utc("2026-01-01T00:00")

    assert parse("0 0 ? * 1").next_n(reference, 3) == parse("0 0 * * 1").next_n(reference, 3)
    assert parse("0 0 1 * ?").next_n(reference, 3) == parse("0 0 1 * *").next_n(reference, 3)


@pytest.mark.parametrize(
    ("expression", "normalised"),
    [
        ("  0   9 * *  MON-FRI ", "0 9 * * mon-fri"),
        ("0 0 * * 5L", "0 0 * * L5"),
        ("0 0 * * friL", "0 0 * * Lfri"),
        ("0 0 * * l5", "0 0 * * L5"),
        ("0 0 l * *", "0 0 L * *"),
        ("0 0 * * SAT#4", "0 0 * * sat#4"),
        ("@Daily", "@daily"),
        ("*/30 * * * * *", "*/30 * * * * *"),
    ],
)
def test_expression_is_normalised(expression, normalised):
    schedule = parse(expression)
    reparsed = parse(schedule.expression)
    reference = utc("2026-01-01T00:00")

    assert schedule.expression == normalised
    assert reparsed.next_n(reference, 5) == schedule.next_n(reference, 5)


def test_schedule_attributes():
    five_fields = parse("0 9 * * *", "Europe/Berlin")
    six_fields = parse("15 0 9 * * *")

    assert five_fields.timezone == "Europe/Berlin"
    assert five_fields.has_seconds is False
    assert five_fields.wildcard_time is False
    assert six_fields.timezone == "UTC"
    assert six_fields.has_seconds is True
    assert parse("*/5 9 * * *").wildcard_time is True
    assert parse("@hourly").wildcard_time is True


def test_naive_reference_raises_value_error():
    with pytest.raises(ValueError, match="timezone-aware"):
        parse("0 * * * *").next(datetime(2026, 1, 1))


def test_result_is_utc():
    reference = datetime(2026, 1, 1, 9, 30, tzinfo=ZoneInfo("Europe/Berlin"))

    fire = parse("0 * * * *").next(reference)

    assert fire == utc("2026-01-01T09:00")
    assert fire.tzinfo is UTC


# ---------------------------------------------------------------------------
# Day of month and day of week
# ---------------------------------------------------------------------------


def test_both_day_fields_restricted_match_either():
    fires = fire_times("0 9 1-7,15-21 * 1", "UTC", "2021-12-13T00:00", 12)

    assert fires == utc_list(
        "2021-12-13T09:00",
        "2021-12-15T09:00",
        "2021-12-16T09:00",
        "2021-12-17T09:00",
        "2021-12-18T09:00",
        "2021-12-19T09:00",
        "2021-12-20T09:00",
        "2021-12-21T09:00",
        "2021-12-27T09:00",
        "2022-01-01T09:00",
        "2022-01-02T09:00",
        "2022-01-03T09:00",
    )


def test_day_list_or_friday():
    fires = fire_times("30 4 1,15 * 5", "UTC", "2021-12-13T00:00", 6)

    assert fires == utc_list(
        "2021-12-15T04:30",
        "2021-12-17T04:30",
        "2021-12-24T04:30",
        "2021-12-31T04:30",
        "2022-01-01T04:30",
        "2022-01-07T04:30",
    )


def test_starred_day_of_month_requires_both():
    fires = fire_times("0 9 */2 * 1", "UTC", "2021-12-13T00:00", 6)

    assert fires == utc_list(
        "2021-12-13T09:00",
        "2021-12-27T09:00",
        "2022-01-03T09:00",
        "2022-01-17T09:00",
        "2022-01-31T09:00",
        "2022-02-07T09:00",
    )


def test_starred_day_of_week_requires_both():
    # Sundays, Tuesdays, Thursdays and Saturdays that are also the 1st to the 10th.
    fires = fire_times("0 0 1-10 * */2", "UTC", "2026-01-01T00:00", 6)

    assert fires == utc_list(
        "2026-01-03T00:00",
        "2026-01-04T00:00",
        "2026-01-06T00:00",
        "2026-01-08T00:00",
        "2026-01-10T00:00",
        "2026-02-01T00:00",
    )


# ---------------------------------------------------------------------------
# Leap days, aliases, steps and extensions
# ---------------------------------------------------------------------------


def test_leap_day_next_and_prev():
    schedule = parse("0 9 29 2 *")

    assert schedule.next_n(utc("2016-02-29T09:00"), 3) == utc_list(
        "2020-02-29T09:00", "2024-02-29T09:00", "2028-02-29T09:00"
    )
    assert schedule.prev(utc("2024-02-29T00:00")) == utc("2020-02-29T09:00")


def test_leap_day_skips_century_year():
    fires = fire_times("0 0 29 2 *", "UTC", "2096-03-01T00:00", 2)

    assert fires == utc_list("2104-02-29T00:00", "2108-02-29T00:00")


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@hourly", ["2026-01-05T13:00", "2026-01-05T14:00", "2026-01-05T15:00"]),
        ("@daily", ["2026-01-06T00:00", "2026-01-07T00:00", "2026-01-08T00:00"]),
        ("@midnight", ["2026-01-06T00:00", "2026-01-07T00:00", "2026-01-08T00:00"]),
        ("@weekly", ["2026-01-11T00:00", "2026-01-18T00:00", "2026-01-25T00:00"]),
        ("@monthly", ["2026-02-01T00:00", "2026-03-01T00:00", "2026-04-01T00:00"]),
        ("@yearly", ["2027-01-01T00:00", "2028-01-01T00:00", "2029-01-01T00:00"]),
        ("@annually", ["2027-01-01T00:00", "2028-01-01T00:00", "2029-01-01T00:00"]),
    ],
)
def test_alias_fire_times(alias, expected):
    assert fire_times(alias, "UTC", "2026-01-05T12:00", 3) == utc_list(*expected)


STEP_AND_EXTENSION_CASES = [
    (
        "0 0 */3 * *",
        "2020-03-10T12:00",
        ["03-13", "03-16", "03-19", "03-22", "03-25", "03-28", "03-31", "04-01", "04-04"],
        2020,
    ),
    ("0 0 */7 * *", "2020-03-10T12:00", ["03-15", "03-22", "03-29", "04-01", "04-08", "04-15"], 2020),
    ("0 0 1 */2 *", "2019-02-01T00:00", ["03-01", "05-01", "07-01", "09-01"], 2019),
]


@pytest.mark.parametrize(("expression", "reference", "month_days", "year"), STEP_AND_EXTENSION_CASES)
def test_step_fire_times(expression, reference, month_days, year):
    expected = [utc(f"{year}-{month_day}T00:00") for month_day in month_days]

    assert fire_times(expression, "UTC", reference, len(expected)) == expected


@pytest.mark.parametrize(
    ("expression", "expected_dates"),
    [
        ("0 0 * * 6#4", ["2024-08-24", "2024-09-28", "2024-10-26", "2024-11-23", "2024-12-28", "2025-01-25"]),
        ("0 0 * * L5", ["2024-08-30", "2024-09-27", "2024-10-25", "2024-11-29", "2024-12-27", "2025-01-31"]),
        ("0 0 * * 5L", ["2024-08-30", "2024-09-27", "2024-10-25", "2024-11-29", "2024-12-27", "2025-01-31"]),
        ("0 0 L * *", ["2024-08-31", "2024-09-30", "2024-10-31", "2024-11-30", "2024-12-31", "2025-01-31"]),
        ("0 0 L 2 *", ["2025-02-28", "2026-02-28", "2027-02-28", "2028-02-29"]),
    ],
)
def test_extension_fire_times(expression, expected_dates):
    expected = [utc(f"{day}T00:00") for day in expected_dates]

    assert fire_times(expression, "UTC", "2024-08-02T00:00", len(expected)) == expected


# ---------------------------------------------------------------------------
# Seconds and strictness
# ---------------------------------------------------------------------------


def test_seconds_field_comes_first():
    assert fire_times("*/30 * * * * *", "UTC", "2026-07-03T10:00:05", 4) == utc_list(
        "2026-07-03T10:00:30", "2026-07-03T10:01:00", "2026-07-03T10:01:30", "2026-07-03T10:02:00"
    )
    assert fire_times("*/5 * * * * *", "UTC", "2010-01-25T04:46:00", 3) == utc_list(
        "2010-01-25T04:46:05", "2010-01-25T04:46:10", "2010-01-25T04:46:15"
    )


def test_six_fields_are_not_minute_first():
    # With seconds first, "0 30 9 * * *" is 09:30:00 and never 00:30 or second 30.
    assert fire_times("0 30 9 * * *", "UTC", "2026-01-01T00:00", 1) == utc_list("2026-01-01T09:30:00")


@pytest.mark.parametrize(
    ("expression", "reference", "expected"),
    [
        ("0,30 * * * *", "2018-05-15T09:00:30", "2018-05-15T09:30:00"),
        ("0,30 * * * *", "2018-05-15T09:30:00", "2018-05-15T10:00:00"),
        ("0,30 * * * *", "2018-05-15T09:29:59.999999", "2018-05-15T09:30:00"),
        ("1 * * * *", "2020-01-01T10:00:59.500000", "2020-01-01T10:01:00"),
        ("* * * * * *", "2020-01-01T10:00:59.500000", "2020-01-01T10:01:00"),
    ],
)
def test_next_is_strictly_later(expression, reference, expected):
    assert parse(expression).next(utc(reference)) == utc(expected)


def test_prev_is_strictly_earlier():
    schedule = parse("0,30 * * * *")

    assert schedule.prev(utc("2018-05-15T09:30:00")) == utc("2018-05-15T09:00:00")
    assert schedule.prev(utc("2018-05-15T09:30:00.000001")) == utc("2018-05-15T09:30:00")


def test_occurrences_between_bounds():
    schedule = parse("0 * * * *")

    fires = schedule.occurrences_between(utc("2026-01-01T01:00"), utc("2026-01-01T03:00"))

    assert fires == utc_list("2026-01-01T02:00", "2026-01-01T03:00")


# ---------------------------------------------------------------------------
# Daylight saving time
# ---------------------------------------------------------------------------


def test_wildcard_fires_twice_in_repeated_hour():
    fires = fire_times("0 * * * *", "America/Los_Angeles", "2026-11-01T07:30", 5)

    assert fires == utc_list(
        "2026-11-01T08:00", "2026-11-01T09:00", "2026-11-01T10:00", "2026-11-01T11:00", "2026-11-01T12:00"
    )


def test_fixed_time_in_repeated_hour_runs_once():
    fires = fire_times("30 1 * * *", "America/Los_Angeles", "2026-10-31T12:00", 3)

    assert fires == utc_list("2026-11-01T08:30", "2026-11-02T09:30", "2026-11-03T09:30")
    assert utc("2026-11-01T09:30") not in fires


def test_fixed_time_in_repeated_hour_berlin():
    fires = fire_times("30 2 * * *", "Europe/Berlin", "2021-10-30T12:00", 2)

    assert fires == utc_list("2021-10-31T00:30", "2021-11-01T01:30")


def test_fixed_time_in_half_hour_repeat_runs_once():
    # Lord Howe Island turns its clocks back by 30 minutes, from 02:00 to 01:30,
    # on 2020-04-05, so 01:45 happens twice that night.
    schedule = parse("45 1 * * *", "Australia/Lord_Howe")

    local_day = schedule.occurrences_between(utc("2020-04-04T13:00"), utc("2020-04-05T13:30"))

    assert local_day == utc_list("2020-04-04T14:45")


def test_wildcard_in_half_hour_repeat():
    schedule = parse("*/15 1 * * *", "Australia/Lord_Howe")

    local_day = schedule.occurrences_between(utc("2020-04-04T13:00"), utc("2020-04-05T13:30"))

    assert local_day == utc_list(
        "2020-04-04T14:00",
        "2020-04-04T14:15",
        "2020-04-04T14:30",
        "2020-04-04T14:45",
        "2020-04-04T15:00",
        "2020-04-04T15:15",
    )


def test_fixed_time_in_gap_runs_after_gap():
    fires = fire_times("30 2 * * *", "America/New_York", "2026-03-07T12:00", 2)

    assert fires == utc_list("2026-03-08T07:00", "2026-03-09T06:30")


def test_several_fixed_times_in_gap_run_once():
    schedule = parse("0,30 2 * * *", "America/New_York")

    local_day = schedule.occurrences_between(utc("2026-03-08T05:00"), utc("2026-03-09T04:00"))

    assert local_day == utc_list("2026-03-08T07:00")


def test_wildcard_in_gap_never_fires():
    schedule = parse("*/15 2 * * *", "America/New_York")

    local_day = schedule.occurrences_between(utc("2026-03-08T05:00"), utc("2026-03-09T04:00"))
    next_day = schedule.next(utc("2026-03-08T05:00"))

    assert local_day == []
    assert next_day == utc("2026-03-09T06:00")


def test_prev_of_fixed_time_in_gap():
    schedule = parse("30 2 * * *", "America/New_York")

    assert schedule.prev(utc("2026-03-09T00:00")) == utc("2026-03-08T07:00")


def test_fixed_time_in_midnight_gap():
    # Cuba moves its clocks from 00:00 to 01:00 on 2026-03-08 (05:00 UTC).
    fires = fire_times("30 0 * * *", "America/Havana", "2026-03-07T12:00", 2)

    assert fires == utc_list("2026-03-08T05:00", "2026-03-09T04:30")


def test_wildcard_twice_in_repeated_midnight():
    # Cuba moves its clocks from 01:00 back to 00:00 on 2026-11-01 (05:00 UTC).
    fires = fire_times("*/30 0 * * *", "America/Havana", "2026-10-31T12:00", 5)

    assert fires == utc_list(
        "2026-11-01T04:00", "2026-11-01T04:30", "2026-11-01T05:00", "2026-11-01T05:30", "2026-11-02T05:00"
    )


def test_weekly_fixed_time_across_spring_forward():
    assert fire_times("0 8 * * 0", "America/Chicago", "2026-03-08T05:45", 3) == utc_list(
        "2026-03-08T13:00", "2026-03-15T13:00", "2026-03-22T13:00"
    )
    assert fire_times("0 12 * * 0", "Europe/Berlin", "2022-03-24T11:00", 3) == utc_list(
        "2022-03-27T10:00", "2022-04-03T10:00", "2022-04-10T10:00"
    )


def test_every_minute_across_fall_back():
    schedule = parse("* * * * *", "America/Los_Angeles")

    inclusive = schedule.occurrences_between(utc("2021-11-07T07:59"), utc("2021-11-07T09:59"))
    wider = schedule.occurrences_between(utc("2021-11-07T07:58"), utc("2021-11-07T10:02"))
    gaps = {later - earlier for earlier, later in zip(inclusive, inclusive[1:])}

    assert len(inclusive) == 120
    assert inclusive[0] == utc("2021-11-07T08:00")
    assert inclusive[-1] == utc("2021-11-07T09:59")
    assert max(gaps) == timedelta(seconds=60)
    assert len(wider) == 124
    assert wider[0] == utc("2021-11-07T07:59")
    assert wider[-1] == utc("2021-11-07T10:02")


def test_every_five_minutes_across_fall_back():
    schedule = parse("*/5 * * * *", "America/Los_Angeles")

    fires = schedule.occurrences_between(utc("2021-11-07T07:55"), utc("2021-11-07T09:55"))

    assert len(fires) == 24
    assert fires[0] == utc("2021-11-07T08:00")
    assert fires[-1] == utc("2021-11-07T09:55")


def test_fixed_time_berlin_offset_changes():
    schedule = parse("1 12 * * *", "Europe/Berlin")

    spring = schedule.next_n(utc("2021-04-08T09:00"), 3)
    autumn = schedule.next_n(utc("2021-10-29T00:00"), 4)

    assert spring == utc_list("2021-04-08T10:01", "2021-04-09T10:01", "2021-04-10T10:01")
    assert autumn == utc_list("2021-10-29T10:01", "2021-10-30T10:01", "2021-10-31T11:01", "2021-11-01T11:01")
    assert all(fire.hour != 12 for fire in spring + autumn)


def test_wildcard_only_in_gap_raises():
    # The second Sunday of March is the spring-forward day in New York since 2007,
    # so 02:00-02:59 on that day never exists again.
    schedule = parse("* 2 * 3 0#2", "America/New_York")

    started = time.perf_counter()
    with pytest.raises(NoOccurrence) as raised:
        schedule.next(utc("2026-01-01T00:00"))
    elapsed = time.perf_counter() - started

    assert raised.value.field == "cron"
    assert elapsed < 1.0
    assert schedule.prev(utc("2026-01-01T00:00")) == utc("2006-03-12T07:59")


# ---------------------------------------------------------------------------
# Brute-force comparison over DST days
# ---------------------------------------------------------------------------

WILDCARD_PREDICATES = {
    "* * * * *": lambda local: True,
    "*/15 * * * *": lambda local: local.minute % 15 == 0,
    "0 * * * *": lambda local: local.minute == 0,
    "30 * * * *": lambda local: local.minute == 30,
    "* 1 * * *": lambda local: local.hour == 1,
    "*/10 1-3 * * *": lambda local: local.minute % 10 == 0 and 1 <= local.hour <= 3,
    "*/20 23,0 * * *": lambda local: local.minute % 20 == 0 and local.hour in (23, 0),
    "*/20 2 * * 0": lambda local: local.minute % 20 == 0 and local.hour == 2 and local.isoweekday() == 7,
}

DST_WINDOWS = [
    ("America/Los_Angeles", "2021-11-06T12:00", "2021-11-08T12:00"),
    ("America/New_York", "2026-03-07T12:00", "2026-03-09T12:00"),
    ("Europe/Berlin", "2021-03-27T12:00", "2021-03-29T12:00"),
    ("Australia/Lord_Howe", "2020-04-04T00:00", "2020-04-06T00:00"),
    ("Australia/Lord_Howe", "2020-10-03T00:00", "2020-10-05T00:00"),
    ("America/Havana", "2026-03-07T12:00", "2026-03-09T12:00"),
    ("America/Havana", "2026-10-31T12:00", "2026-11-02T12:00"),
    ("America/Santiago", "2026-04-04T00:00", "2026-04-06T00:00"),
    ("America/Santiago", "2026-09-05T12:00", "2026-09-07T12:00"),
]


def brute_force_fires(predicate, zone, start, end):
    """Return every UTC minute in (start, end] whose wall-clock time satisfies ``predicate``."""
    zone_info = ZoneInfo(zone)
    fires = []
    moment = start + timedelta(minutes=1)
    while moment <= end:
        if predicate(moment.astimezone(zone_info)):
            fires.append(moment)
        moment += timedelta(minutes=1)
    return fires


@pytest.mark.parametrize(("zone", "start", "end"), DST_WINDOWS)
@pytest.mark.parametrize("expression", sorted(WILDCARD_PREDICATES))
def test_wildcard_matches_brute_force(expression, zone, start, end):
    expected = brute_force_fires(WILDCARD_PREDICATES[expression], zone, utc(start), utc(end))

    actual = parse(expression, zone).occurrences_between(utc(start), utc(end))

    assert actual == expected


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

PROPERTY_ZONES = [
    "UTC",
    "America/Los_Angeles",
    "America/New_York",
    "Europe/Berlin",
    "Europe/Dublin",
    "Australia/Lord_Howe",
    "Australia/Adelaide",
    "America/Havana",
    "America/Santiago",
    "Pacific/Apia",
    "Asia/Kolkata",
    "Asia/Tehran",
]

expressions = st.tuples(
    st.sampled_from([None, "0", "*/20", "30", "*"]),
    st.sampled_from(["*", "*/7", "0", "15,45", "5-10", "59"]),
    st.sampled_from(["*", "*/5", "0", "2", "1-3", "23"]),
    st.sampled_from(["*", "1", "*/10", "15-20", "L", "29", "31"]),
    st.sampled_from(["*", "2", "*/3", "jan,jul", "3-11"]),
    st.sampled_from(["*", "0", "1-5", "6#4", "L5", "sun,sat"]),
).map(lambda fields: " ".join(part for part in fields if part is not None))

references = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
)


def parse_or_skip(expression, zone):
    try:
        return parse(expression, zone)
    except ValidationError:
        assume(False)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(expression=expressions, zone=st.sampled_from(PROPERTY_ZONES), reference=references)
def test_next_and_prev_are_consistent(expression, zone, reference):
    schedule = parse_or_skip(expression, zone)

    following = schedule.next(reference)
    sequence = schedule.next_n(reference, 5)
    previous = schedule.prev(reference)

    assert following > reference
    assert following.tzinfo is UTC
    assert sequence[0] == following
    assert all(earlier < later for earlier, later in zip(sequence, sequence[1:]))
    assert schedule.prev(following) <= reference
    assert previous < reference
    assert schedule.next(previous) >= reference
    assert schedule.occurrences_between(reference, sequence[-1]) == sequence


# ---------------------------------------------------------------------------
# Preview
# ---------------------------------------------------------------------------


def test_preview_returns_next_fire_times():
    fires = preview("30 2 * * *", "America/New_York", 3, utc("2026-03-07T12:00"))

    assert fires == utc_list("2026-03-08T07:00", "2026-03-09T06:30", "2026-03-10T06:30")


def test_preview_defaults_to_current_time():
    before = datetime.now(UTC)

    fires = preview("* * * * *", "UTC", 2)

    assert fires[0] > before
    assert fires[1] - fires[0] == timedelta(minutes=1)


@pytest.mark.parametrize("count", [0, -1, 1001, 2.5, "3", True])
def test_preview_rejects_invalid_count(count):
    with pytest.raises(ValidationError) as raised:
        preview("* * * * *", "UTC", count, utc("2026-01-01T00:00"))

    assert raised.value.field == "n"


def test_preview_rejects_invalid_expression():
    with pytest.raises(ValidationError) as raised:
        preview("61 * * * *", "UTC", 3, utc("2026-01-01T00:00"))

    assert raised.value.field == "cron.minute"
