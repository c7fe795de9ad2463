"""Cron expressions for recurring jobs: parsing, validation and fire times.

Syntax
------
An expression has five fields separated by whitespace::

    minute hour day_of_month month day_of_week

A sixth field adds seconds, and it comes first::

    second minute hour day_of_month month day_of_week

Without a seconds field every fire time falls on second 0.

Allowed values are 0-59 for seconds and minutes, 0-23 for hours, 1-31 for the
day of the month, 1-12 or ``jan``-``dec`` for months, and 0-7 or
``sun``-``sat`` for the day of the week, where both 0 and 7 mean Sunday.
Names are case-insensitive.

Each field is a comma-separated list of items. An item is ``*`` (every value),
a single value, or a range ``a-b``, and any of these may end in ``/step``.
A value with a step but no range, such as ``5/15``, runs from that value to the
end of the field. A step must be at least 1 and at most the width of the
field, because a larger step would select only the start value. The largest
steps are 59 for seconds and minutes, 23 for hours, 30 for days of the month,
11 for months and 6 for days of the week. Ranges must run upwards.
Wraparound ranges such as ``30-10`` are rejected, so write ``30-59,0-10``
instead.

Extensions:

* ``L`` in day_of_month is the last day of the month.
* ``Lw`` in day_of_week, such as ``L5``, is the last weekday ``w`` of the
  month (here the last Friday). The Quartz spelling ``5L`` is also accepted.
* ``w#n`` in day_of_week, such as ``6#4``, is the n-th weekday ``w`` of the
  month (here the fourth Saturday), with n from 1 to 5.
* ``?`` in either day field means the same as ``*``.
* Aliases: ``@yearly`` and ``@annually`` (``0 0 1 1 *``), ``@monthly``
  (``0 0 1 * *``), ``@weekly`` (``0 0 * * 0``), ``@daily`` and ``@midnight``
  (``0 0 * * *``), ``@hourly`` (``0 * * * *``). ``@reboot`` is rejected
  because schedules fire on time, not at start-up.

An expression that can never fire on any date, such as ``0 0 30 2 *``, is
rejected.

Day of month and day of week
----------------------------
When both day fields are restricted, a day matches if either field matches.
When either field starts with ``*`` (this includes ``*/2`` and ``?``), a day
must match both fields. This is the rule of Vixie cron and cronie.
For example ``0 9 1-7 * 1`` fires on days 1 to 7 and on every Monday, while
``0 9 */2 * 1`` fires only on Mondays that fall on an odd day of the month.

Time zones and daylight saving time
-----------------------------------
Fields are matched against the wall-clock time in the schedule's IANA time
zone, and fire times are returned as aware UTC datetimes. Where the UTC offset
changes, the policy of Vixie cron and cronie applies:

* A wildcard schedule has ``*`` in its minute or hour field, which includes
  ``*/n`` and ``@hourly``. It fires at every real instant whose wall-clock
  time matches. In a repeated autumn hour it therefore fires twice for each
  matching time, and it never fires at a wall-clock time that the
  spring-forward gap skips.
* A fixed-time schedule has no ``*`` in its minute or hour field. It fires
  once for each matching wall-clock time. In a repeated hour it fires at the
  first occurrence. Matching times inside the spring-forward gap fire once
  together, at the first instant after the gap. For example ``30 2 * * *`` in America/New_York
  fires at 03:00 EDT on the day that 02:30 does not exist.

The Vixie cron manual limits this special handling to clock changes of less
than three hours. This module applies it to every offset change in the tz
database.

The normalised ``expression`` of a schedule is the input with whitespace
collapsed to single spaces and text in lower case, except that ``L`` is upper
case and the Quartz spelling ``5L`` becomes ``L5``. Aliases stay aliases.
"""

import calendar
import heapq
import itertools
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nself_jobs.errors import ValidationError

UTC = dt_timezone.utc

# Upper limit on the number of fire times that preview() computes in one call.
PREVIEW_MAX_COUNT = 1000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_SECOND = timedelta(seconds=1)
_DAY_SECONDS = 86400

# UTC offsets in tzdata 2026.6 lie between -15:56 and +15:14 (local mean times
# of the 19th century), so 16 hours bounds the distance between a wall-clock day
# and the UTC instants that fall on it.
_MAX_OFFSET_SECONDS = 16 * 3600

# Offset changes in the tz database are days apart (at least 6.9 days in
# tzdata 2026.6), so sampling every 6 hours finds each one.
# NOTE: two offset changes less than 6 hours apart that restore the same offset
# would be missed.
_OFFSET_SAMPLE_SECONDS = 6 * 3600

# The Gregorian calendar repeats every 400 years, so a date pattern that occurs at
# all occurs within any 400-year window. A search for fire times stops
# after this many days without one.
_SEARCH_HORIZON_DAYS = 400 * 366

# Searches stay inside years 2 to 9997, so the UTC window around each day fits
# into the range of datetime.
_FIRST_SEARCH_ORDINAL = date(2, 1, 1).toordinal()
_LAST_SEARCH_ORDINAL = date(9997, 12, 31).toordinal()

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
        start=1,
    )
}
_WEEKDAY_NAMES = {
    name: number
    for number, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])
}

_ITEM_PATTERN = re.compile(r"(?P<start>\*|[0-9a-z]+)(?:-(?P<stop>[0-9a-z]+))?(?:/(?P<step>[0-9]+))?")
_WEEKDAY_TOKEN = r"(?:[0-7]|sun|mon|tue|wed|thu|fri|sat)"
_NTH_WEEKDAY_PATTERN = re.compile(rf"(?P<weekday>{_WEEKDAY_TOKEN})#(?P<week>[0-9]+)")
_LAST_WEEKDAY_PATTERN = re.compile(rf"l(?P<weekday>{_WEEKDAY_TOKEN})")
_QUARTZ_LAST_WEEKDAY_PATTERN = re.compile(rf"(?P<weekday>{_WEEKDAY_TOKEN})l")


class NoOccurrence(ValidationError):
    """Raised when a schedule has no fire time in the searched range.

    This happens for a wildcard schedule confined to times that daylight saving
    time skips, and near the ends of the supported years 2 to 9997.
    """

    def __init__(self, message):
        super().__init__("cron", message)


@dataclass(frozen=True)
class _FieldSpec:
    """Name and value range of one cron field."""

    name: str
    low: int
    high: int
    # Highest value that ``*`` covers: 6 for day_of_week, where 7 repeats Sunday.
    star_high: int
    names: dict

    @property
    def path(self):
        return f"cron.{self.name}"


_SECOND_SPEC = _FieldSpec("second", 0, 59, 59, {})
_MINUTE_SPEC = _FieldSpec("minute", 0, 59, 59, {})
_HOUR_SPEC = _FieldSpec("hour", 0, 23, 23, {})
_DAY_OF_MONTH_SPEC = _FieldSpec("day_of_month", 1, 31, 31, {})
_MONTH_SPEC = _FieldSpec("month", 1, 12, 12, _MONTH_NAMES)
_DAY_OF_WEEK_SPEC = _FieldSpec("day_of_week", 0, 7, 6, _WEEKDAY_NAMES)


@dataclass
class _Field:
    """One parsed field: the values it selects and its normalised text."""

    values: set = field(default_factory=set)
    text: str = ""
    # True when the field text starts with * or ?, which switches the day
    # fields from OR to AND.
    starred: bool = False
    # True when day_of_month contains ``L``.
    last_day: bool = False
    # ``w#n`` items in day_of_week, as (weekday, week number) pairs.
    nth_weekdays: set = field(default_factory=set)
    # ``Lw`` items in day_of_week.
    last_weekdays: set = field(default_factory=set)


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def parse(expression, timezone="UTC"):
    """Parse and validate a cron expression in an IANA time zone.

    Returns a CronSchedule. Raises ValidationError naming the field at fault,
    such as ``cron.minute``, ``cron`` for the expression as a whole, or
    ``timezone``.
    """
    alias, fields_text = _expand_alias(expression)
    texts = fields_text.split()
    if len(texts) not in (5, 6):
        raise ValidationError(
            "cron",
            f"expected 5 fields (minute hour day_of_month month day_of_week) or 6 "
            f"with seconds first, got {len(texts)} in {expression!r}",
        )
    has_seconds = len(texts) == 6
    if not has_seconds:
        texts = ["0"] + texts

    specs = (_SECOND_SPEC, _MINUTE_SPEC, _HOUR_SPEC, _DAY_OF_MONTH_SPEC, _MONTH_SPEC, _DAY_OF_WEEK_SPEC)
    seconds, minutes, hours, days_of_month, months, days_of_week = (
        _parse_field(text, spec) for text, spec in zip(texts, specs)
    )
    days = _DaySelector(days_of_month, months, days_of_week)
    _check_some_date_matches(days, days_of_month, months, days_of_week)

    zone = _load_zone(timezone)
    if alias is not None:
        normalised = alias
    else:
        field_texts = [f.text for f in (minutes, hours, days_of_month, months, days_of_week)]
        if has_seconds:
            field_texts.insert(0, seconds.text)
        normalised = " ".join(field_texts)

    return CronSchedule(
        expression=normalised,
        zone=zone,
        has_seconds=has_seconds,
        times=_TimesOfDay(hours.values, minutes.values, seconds.values),
        days=days,
        wildcard_time=_has_star_item(minutes.text) or _has_star_item(hours.text),
    )


def preview(expression, timezone="UTC", n=5, now=None):
    """Return the next ``n`` fire times of an expression after ``now``.

    ``now`` defaults to the current time. The result is a list of aware UTC
    datetimes. Raises ValidationError for an invalid expression, time zone or
    count.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= PREVIEW_MAX_COUNT:
        raise ValidationError("n", f"invalid count {n!r}: expected an integer from 1 to {PREVIEW_MAX_COUNT}")
    schedule = parse(expression, timezone)
    if now is None:
        now = datetime.now(UTC)
    return schedule.next_n(now, n)


def _expand_alias(expression):
    """Return (alias or None, field text) for an expression string."""
    if not isinstance(expression, str):
        raise ValidationError("cron", f"expected a string, got {type(expression).__name__}")
    stripped = expression.strip()
    if not stripped:
        raise ValidationError("cron", "the expression is empty: expected 5 or 6 fields or an alias such as @daily")
    if not stripped.startswith("@"):
        return None, stripped

    alias = stripped.lower()
    if alias == "@reboot":
        raise ValidationError("cron", "@reboot is not supported: schedules fire on time, not at start-up")
    if alias not in _ALIASES:
        known = ", ".join(_ALIASES)
        raise ValidationError("cron", f"unknown alias {stripped!r}: expected one of {known}")
    return alias, _ALIASES[alias]


def _load_zone(name):
    if not isinstance(name, str) or not name:
        raise ValidationError("timezone", f"invalid time zone {name!r}: expected an IANA name such as Europe/Berlin")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValidationError(
            "timezone", f"unknown time zone {name!r}: expected an IANA name such as Europe/Berlin"
        ) from error


def _has_star_item(field_text):
    return any(item.startswith("*") for item in field_text.split(","))


def _parse_field(text, spec):
    parsed = _Field(starred=text.startswith(("*", "?")))
    normalised_items = []
    for item in text.lower().split(","):
        if not item:
            raise ValidationError(spec.path, f"empty item in list {text!r}: remove the extra comma")
        normalised_items.append(_parse_item(item, spec, parsed))
    parsed.text = ",".join(normalised_items)
    return parsed


def _parse_item(item, spec, parsed):
    """Add the values of one list item to ``parsed`` and return its normalised text."""
    if item == "?" and spec in (_DAY_OF_MONTH_SPEC, _DAY_OF_WEEK_SPEC):
        parsed.values.update(range(spec.low, spec.star_high + 1))
        return item
    if spec is _DAY_OF_MONTH_SPEC:
        if item == "l":
            parsed.last_day = True
            return "L"
        if item.endswith("w"):
            raise ValidationError(spec.path, f"{item!r}: W (nearest weekday) is not supported")
    if spec is _DAY_OF_WEEK_SPEC:
        extension_text = _parse_weekday_extension(item, parsed)
        if extension_text is not None:
            return extension_text

    match = _ITEM_PATTERN.fullmatch(item)
    if match is None:
        raise ValidationError(spec.path, f"invalid item {item!r} in {spec.name}: {_item_help(spec)}")
    first, last = _item_bounds(match, spec, item)
    step = _item_step(match, spec, item)
    for value in range(first, last + 1, step):
        parsed.values.add(value % 7 if spec is _DAY_OF_WEEK_SPEC else value)
    return item


def _item_bounds(match, spec, item):
    """Return the first and last value of an item's range."""
    start, stop, step = match.group("start", "stop", "step")
    if start == "*":
        if stop is not None:
            raise ValidationError(spec.path, f"invalid item {item!r}: a range cannot start with *")
        return spec.low, spec.star_high

    first = _parse_value(start, spec)
    if stop is None:
        # ``a/n`` runs from a to the end of the field, while a lone ``a`` is one value.
        return first, (spec.star_high if step is not None else first)
    last = _parse_value(stop, spec)
    if first > last:
        raise ValidationError(
            spec.path,
            f"range {item!r} runs backwards: wraparound ranges are not supported, "
            f"so split it into {first}-{spec.high},{spec.low}-{last}",
        )
    return first, last


def _item_step(match, spec, item):
    step_text = match.group("step")
    if step_text is None:
        return 1
    step = int(step_text)
    max_step = spec.star_high - spec.low
    if step < 1:
        raise ValidationError(spec.path, f"invalid step in {item!r}: a step must be at least 1")
    if step > max_step:
        raise ValidationError(
            spec.path,
            f"step {step} in {item!r} is larger than the {spec.name} range allows: "
            f"use a step from 1 to {max_step}, or a single value",
        )
    return step


def _parse_value(token, spec):
    if token.isdigit():
        value = int(token)
    elif token in spec.names:
        value = spec.names[token]
    else:
        raise ValidationError(spec.path, f"invalid value {token!r} in {spec.name}: expected {_value_range_text(spec)}")
    if not spec.low <= value <= spec.high:
        raise ValidationError(spec.path, f"{value} is out of range for {spec.name}: expected {_value_range_text(spec)}")
    return value


def _value_range_text(spec):
    if spec is _DAY_OF_WEEK_SPEC:
        return "0-7 (0 and 7 are Sunday) or sun-sat"
    if spec is _MONTH_SPEC:
        return "1-12 or jan-dec"
    return f"{spec.low}-{spec.high}"


def _item_help(spec):
    text = f"expected *, a value {_value_range_text(spec)}, a range such as 1-5, or either with a step such as /2"
    if spec is _DAY_OF_MONTH_SPEC:
        return text + ", or L"
    if spec is _DAY_OF_WEEK_SPEC:
        return text + ", or an extension such as 6#4 or L5"
    return text


def _parse_weekday_extension(item, parsed):
    """Parse ``w#n``, ``Lw`` or ``wL`` into ``parsed``; return None for other items."""
    spec = _DAY_OF_WEEK_SPEC
    if item == "l":
        raise ValidationError(
            spec.path,
            "a bare L in day_of_week is not supported: use L in day_of_month for the last day of "
            "the month, or L followed by a weekday, such as L5, for the last Friday",
        )

    nth = _NTH_WEEKDAY_PATTERN.fullmatch(item)
    if nth is not None:
        week = int(nth.group("week"))
        if not 1 <= week <= 5:
            raise ValidationError(spec.path, f"invalid item {item!r}: the week number after # must be 1-5")
        parsed.nth_weekdays.add((_parse_value(nth.group("weekday"), spec) % 7, week))
        return item

    last = _LAST_WEEKDAY_PATTERN.fullmatch(item) or _QUARTZ_LAST_WEEKDAY_PATTERN.fullmatch(item)
    if last is not None:
        weekday_text = last.group("weekday")
        parsed.last_weekdays.add(_parse_value(weekday_text, spec) % 7)
        return f"L{weekday_text}"
    return None


# ---------------------------------------------------------------------------
# Date matching
# ---------------------------------------------------------------------------


class _DaySelector:
    """Matches calendar dates against the day_of_month, month and day_of_week fields."""

    def __init__(self, days_of_month, months, days_of_week):
        self.months = tuple(sorted(months.values))
        self._month_set = frozenset(months.values)
        self._days_of_month = frozenset(days_of_month.values)
        self._last_day = days_of_month.last_day
        self._weekdays = frozenset(days_of_week.values)
        self._nth_weekdays = frozenset(days_of_week.nth_weekdays)
        self._last_weekdays = frozenset(days_of_week.last_weekdays)
        self._require_both = days_of_month.starred or days_of_week.starred

    def matches_day(self, day, weekday, month_length):
        """Return whether a day of a month matches the day fields, combined by OR or AND.

        ``weekday`` counts from 0 for Sunday. The month field is not checked.
        """
        day_of_month_matches = day in self._days_of_month or (self._last_day and day == month_length)
        day_of_week_matches = (
            weekday in self._weekdays
            or (weekday, (day - 1) // 7 + 1) in self._nth_weekdays
            or (weekday in self._last_weekdays and day + 7 > month_length)
        )
        if self._require_both:
            return day_of_month_matches and day_of_week_matches
        return day_of_month_matches or day_of_week_matches

    def matches_date(self, day):
        if day.month not in self._month_set:
            return False
        month_length = calendar.monthrange(day.year, day.month)[1]
        return self.matches_day(day.day, (day.weekday() + 1) % 7, month_length)

    def following_month_start(self, day):
        """Return the first day of the next selected month after ``day``'s month."""
        index = bisect_right(self.months, day.month)
        if index < len(self.months):
            return date(day.year, self.months[index], 1)
        return date(day.year + 1, self.months[0], 1)

    def preceding_month_end(self, day):
        """Return the last day of the previous selected month before ``day``'s month."""
        index = bisect_left(self.months, day.month) - 1
        year = day.year if index >= 0 else day.year - 1
        month = self.months[index]
        return date(year, month, calendar.monthrange(year, month)[1])

    def iter_dates(self, first_ordinal, last_ordinal, forward):
        """Yield the ordinals of matching dates from first to last, inclusive, in search order."""
        low, high = (first_ordinal, last_ordinal) if forward else (last_ordinal, first_ordinal)
        day = date.fromordinal(first_ordinal)
        one_day = timedelta(days=1 if forward else -1)
        while low <= day.toordinal() <= high:
            if day.month not in self._month_set:
                day = self.following_month_start(day) if forward else self.preceding_month_end(day)
                continue
            if self.matches_date(day):
                yield day.toordinal()
            day += one_day


def _check_some_date_matches(days, days_of_month, months, days_of_week):
    """Raise ValidationError when no calendar date satisfies the day and month fields.

    A month's calendar depends only on its length and the weekday of its first
    day, and every combination of the two occurs in the Gregorian calendar, so
    checking all combinations for the selected months is exact.
    """
    for month in days.months:
        lengths = (28, 29) if month == 2 else (calendar.monthrange(2001, month)[1],)
        for length, first_weekday in itertools.product(lengths, range(7)):
            for day in range(1, length + 1):
                if days.matches_day(day, (first_weekday + day - 1) % 7, length):
                    return

    field_path = _DAY_OF_WEEK_SPEC.path if days_of_month.starred and not days_of_week.starred else _DAY_OF_MONTH_SPEC.path
    raise ValidationError(
        field_path,
        f"no date matches day_of_month {days_of_month.text!r}, month {months.text!r} and "
        f"day_of_week {days_of_week.text!r}, so the schedule would never fire",
    )


# ---------------------------------------------------------------------------
# Time-of-day matching
# ---------------------------------------------------------------------------


class _TimesOfDay:
    """Matching times of day, in seconds after midnight, from the hour, minute and second fields."""

    def __init__(self, hours, minutes, seconds):
        self._hours = tuple(sorted(hours))
        self._minutes = tuple(sorted(minutes))
        self._seconds = tuple(sorted(seconds))

    def first_at_or_after(self, moment):
        """Return the earliest matching time of day at or after ``moment``, or None."""
        if moment >= _DAY_SECONDS:
            return None
        hour, remainder = divmod(max(moment, 0), 3600)
        minute, second = divmod(remainder, 60)
        hours, minutes, seconds = self._hours, self._minutes, self._seconds

        hour_index = bisect_left(hours, hour)
        if hour_index == len(hours):
            return None
        if hours[hour_index] == hour:
            minute_index = bisect_left(minutes, minute)
            if minute_index < len(minutes) and minutes[minute_index] == minute:
                second_index = bisect_left(seconds, second)
                if second_index < len(seconds):
                    return hour * 3600 + minute * 60 + seconds[second_index]
                minute_index += 1
            if minute_index < len(minutes):
                return hour * 3600 + minutes[minute_index] * 60 + seconds[0]
            hour_index += 1
            if hour_index == len(hours):
                return None
        return hours[hour_index] * 3600 + minutes[0] * 60 + seconds[0]

    def last_at_or_before(self, moment):
        """Return the latest matching time of day at or before ``moment``, or None."""
        if moment < 0:
            return None
        hour, remainder = divmod(min(moment, _DAY_SECONDS - 1), 3600)
        minute, second = divmod(remainder, 60)
        hours, minutes, seconds = self._hours, self._minutes, self._seconds

        hour_index = bisect_right(hours, hour) - 1
        if hour_index < 0:
            return None
        if hours[hour_index] == hour:
            minute_index = bisect_right(minutes, minute) - 1
            if minute_index >= 0 and minutes[minute_index] == minute:
                second_index = bisect_right(seconds, second) - 1
                if second_index >= 0:
                    return hour * 3600 + minute * 60 + seconds[second_index]
                minute_index -= 1
            if minute_index >= 0:
                return hour * 3600 + minutes[minute_index] * 60 + seconds[-1]
            hour_index -= 1
            if hour_index < 0:
                return None
        return hours[hour_index] * 3600 + minutes[-1] * 60 + seconds[-1]

    def any_between(self, first, stop):
        """Return whether a matching time of day lies in [first, stop)."""
        moment = self.first_at_or_after(first)
        return moment is not None and moment < stop


# ---------------------------------------------------------------------------
# Wall-clock days and UTC offsets
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """Wall-clock times [first, stop) of one day, in seconds after midnight, that share one UTC offset."""

    offset: int
    first: int
    stop: int


@dataclass(frozen=True)
class _GapFire:
    """The instant after a spring-forward gap, where fixed times in [first, stop) of the day fire."""

    instant: int
    first: int
    stop: int


def _day_start_seconds(day_ordinal):
    """Return the wall-clock start of a day as seconds since 1970-01-01 00:00."""
    return (day_ordinal - _EPOCH_ORDINAL) * _DAY_SECONDS


def _offset_at(zone, instant):
    local = (_EPOCH + timedelta(seconds=instant)).astimezone(zone)
    return local.utcoffset() // _SECOND


def _offset_changes(zone, start, start_offset, stop, stop_offset):
    """Return (instant, new offset) for each offset change in (start, stop], found by bisection."""
    if start_offset == stop_offset:
        return []
    if stop - start == 1:
        return [(stop, stop_offset)]
    middle = (start + stop) // 2
    middle_offset = _offset_at(zone, middle)
    return _offset_changes(zone, start, start_offset, middle, middle_offset) + _offset_changes(
        zone, middle, middle_offset, stop, stop_offset
    )


@lru_cache(maxsize=4096)
def _offset_segments(zone, day_ordinal):
    """Return (utc_start, utc_stop, offset) spans of constant offset around a day.

    The spans cover every UTC instant whose wall-clock time can fall on the
    day, plus the instant after a gap that reaches past midnight. Times are
    seconds since the epoch and offsets are seconds east of UTC.
    """
    day_start = _day_start_seconds(day_ordinal)
    window_start = day_start - _MAX_OFFSET_SECONDS
    window_stop = day_start + _DAY_SECONDS + _MAX_OFFSET_SECONDS
    samples = list(range(window_start, window_stop, _OFFSET_SAMPLE_SECONDS)) + [window_stop]
    offsets = [_offset_at(zone, sample) for sample in samples]

    changes = []
    for index in range(len(samples) - 1):
        changes += _offset_changes(zone, samples[index], offsets[index], samples[index + 1], offsets[index + 1])

    boundaries = [window_start] + [instant for instant, _ in changes] + [window_stop]
    segment_offsets = [offsets[0]] + [offset for _, offset in changes]
    segments = zip(boundaries, boundaries[1:], segment_offsets)
    return tuple(segment for segment in segments if segment[0] < segment[1])


def _clip_to_day(wall_start, wall_stop, day_start):
    """Return the part of a wall-clock span inside the day as seconds after midnight, or None."""
    first = max(wall_start - day_start, 0)
    stop = min(wall_stop - day_start, _DAY_SECONDS)
    return (first, stop) if first < stop else None


@lru_cache(maxsize=8192)
def _day_plan(zone, day_ordinal, wildcard_time):
    """Return the runs and gap fires of a day in UTC order.

    A wildcard schedule fires at every instant, so a repeated wall-clock time
    appears in two runs, and gap times appear in none. A fixed-time schedule
    owns each wall-clock time once. A repeated time belongs to the first run,
    and gap times fire together at the instant after the gap.
    """
    day_start = _day_start_seconds(day_ordinal)
    segments = _offset_segments(zone, day_ordinal)
    plan = []
    covered_until = segments[0][0] + segments[0][2]
    for utc_start, utc_stop, offset in segments:
        wall_start, wall_stop = utc_start + offset, utc_stop + offset
        if wildcard_time:
            own_span = _clip_to_day(wall_start, wall_stop, day_start)
        else:
            gap = _clip_to_day(covered_until, wall_start, day_start)
            if gap is not None:
                plan.append(_GapFire(utc_start, *gap))
            own_span = _clip_to_day(max(wall_start, covered_until), wall_stop, day_start)
        if own_span is not None:
            plan.append(_Run(offset, *own_span))
        covered_until = max(covered_until, wall_stop)
    return tuple(plan)


# ---------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------


def _floor_seconds(moment):
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got naive {moment!r}")
    return (moment - _EPOCH) // _SECOND


def _ceil_seconds(moment):
    floor = _floor_seconds(moment)
    return floor if _EPOCH + timedelta(seconds=floor) == moment else floor + 1


def _to_datetime(instant):
    return _EPOCH + timedelta(seconds=instant)


class CronSchedule:
    """A validated cron expression in a time zone; create it with parse().

    Attributes:
        expression: the normalised expression text.
        timezone: the IANA time zone name.
        has_seconds: whether the expression has a seconds field.
        wildcard_time: whether the minute or hour field contains ``*``, which
            selects the wildcard daylight-saving rule.
    """

    def __init__(self, expression, zone, has_seconds, times, days, wildcard_time):
        self.expression = expression
        self.timezone = zone.key
        self.has_seconds = has_seconds
        self.wildcard_time = wildcard_time
        self._zone = zone
        self._times = times
        self._days = days

    def __repr__(self):
        return f"CronSchedule({self.expression!r}, timezone={self.timezone!r})"

    def __eq__(self, other):
        """Compare normalised expression and time zone, so ``@daily`` differs from ``0 0 * * *``."""
        if not isinstance(other, CronSchedule):
            return NotImplemented
        return (self.expression, self.timezone) == (other.expression, other.timezone)

    def __hash__(self):
        return hash((self.expression, self.timezone))

    def next(self, after):
        """Return the first fire time strictly later than ``after``, as an aware UTC datetime.

        ``after`` must be timezone-aware. Raises NoOccurrence when no fire time
        exists within 400 years.
        """
        for instant in self._fires_after(_floor_seconds(after) + 1):
            return _to_datetime(instant)
        raise NoOccurrence(f"{self.expression!r} in {self.timezone} has no fire time within 400 years after {after}")

    def next_n(self, after, n):
        """Return the first ``n`` fire times strictly later than ``after``, in increasing order."""
        instants = list(itertools.islice(self._fires_after(_floor_seconds(after) + 1), n))
        if len(instants) < n:
            raise NoOccurrence(
                f"{self.expression!r} in {self.timezone} has only {len(instants)} of {n} requested fire "
                f"times after {after} before the search stopped"
            )
        return [_to_datetime(instant) for instant in instants]

    def prev(self, before):
        """Return the last fire time strictly earlier than ``before``, as an aware UTC datetime.

        Raises NoOccurrence when no fire time exists within 400 years before it.
        """
        for instant in self._fires_before(_ceil_seconds(before) - 1):
            return _to_datetime(instant)
        raise NoOccurrence(f"{self.expression!r} in {self.timezone} has no fire time within 400 years before {before}")

    def occurrences_between(self, start, end):
        """Return the fire times later than ``start`` and at or before ``end``, in increasing order."""
        last = _floor_seconds(end)
        instants = itertools.takewhile(lambda instant: instant <= last, self._fires_after(_floor_seconds(start) + 1))
        return [_to_datetime(instant) for instant in instants]

    def _fires_after(self, lowest):
        """Yield fire instants at or after ``lowest`` in increasing order, as epoch seconds."""
        # A day's fire times lie within 16 hours of its wall-clock span, so days
        # from here on can hold fire times at or after ``lowest``.
        first_day = (lowest - _DAY_SECONDS - _MAX_OFFSET_SECONDS) // _DAY_SECONDS + _EPOCH_ORDINAL
        if first_day < _FIRST_SEARCH_ORDINAL:
            first_day = _FIRST_SEARCH_ORDINAL
        days = self._days.iter_dates(first_day, _LAST_SEARCH_ORDINAL, forward=True)
        return _merge_days(
            days,
            open_day=lambda ordinal: self._day_fires_from(ordinal, lowest),
            day_bound=lambda ordinal: _day_start_seconds(ordinal) - _MAX_OFFSET_SECONDS,
            sign=1,
        )

    def _fires_before(self, highest):
        """Yield fire instants at or before ``highest`` in decreasing order, as epoch seconds."""
        first_day = (highest + _MAX_OFFSET_SECONDS) // _DAY_SECONDS + _EPOCH_ORDINAL
        if first_day > _LAST_SEARCH_ORDINAL:
            first_day = _LAST_SEARCH_ORDINAL
        days = self._days.iter_dates(first_day, _FIRST_SEARCH_ORDINAL, forward=False)
        return _merge_days(
            days,
            open_day=lambda ordinal: self._day_fires_until(ordinal, highest),
            day_bound=lambda ordinal: _day_start_seconds(ordinal) + _DAY_SECONDS + _MAX_OFFSET_SECONDS,
            sign=-1,
        )

    def _day_fires_from(self, day_ordinal, lowest):
        """Yield one day's fire instants at or after ``lowest`` in increasing order."""
        day_start = _day_start_seconds(day_ordinal)
        for part in _day_plan(self._zone, day_ordinal, self.wildcard_time):
            if isinstance(part, _GapFire):
                if part.instant >= lowest and self._times.any_between(part.first, part.stop):
                    yield part.instant
                continue
            # A wall-clock time t of this run fires at instant base + t.
            base = day_start - part.offset
            moment = self._times.first_at_or_after(max(part.first, lowest - base))
            while moment is not None and moment < part.stop:
                yield base + moment
                moment = self._times.first_at_or_after(moment + 1)

    def _day_fires_until(self, day_ordinal, highest):
        """Yield one day's fire instants at or before ``highest`` in decreasing order."""
        day_start = _day_start_seconds(day_ordinal)
        for part in reversed(_day_plan(self._zone, day_ordinal, self.wildcard_time)):
            if isinstance(part, _GapFire):
                if part.instant <= highest and self._times.any_between(part.first, part.stop):
                    yield part.instant
                continue
            base = day_start - part.offset
            moment = self._times.last_at_or_before(min(part.stop - 1, highest - base))
            while moment is not None and moment >= part.first:
                yield base + moment
                moment = self._times.last_at_or_before(moment - 1)


def _merge_days(days, open_day, day_bound, sign):
    """Merge the fire instants of consecutive days into one ordered stream.

    ``days`` yields day ordinals in search order and ``open_day`` returns a
    day's instants in that order. ``sign`` is 1 for increasing and -1 for
    decreasing order. ``day_bound(day)`` is the earliest (or latest) instant
    that day can contribute. Days overlap in UTC around offset changes, so a
    day's instants are held back until no day still to come could precede them.
    Equal instants from neighbouring days are yielded once. The stream ends
    after 400 years without a fire time.
    """
    heap = []
    order = itertools.count()
    pending = next(days, None)
    last_yielded = None
    reference_day = pending

    while True:
        while pending is not None and (not heap or sign * day_bound(pending) <= heap[0][0]):
            if not heap and abs(pending - reference_day) > _SEARCH_HORIZON_DAYS:
                return
            instants = open_day(pending)
            first = next(instants, None)
            if first is not None:
                heapq.heappush(heap, (sign * first, next(order), instants))
            pending = next(days, None)
        if not heap:
            return

        key, position, instants = heapq.heappop(heap)
        following = next(instants, None)
        if following is not None:
            heapq.heappush(heap, (sign * following, position, instants))
        instant = sign * key
        if instant != last_yielded:
            last_yielded = instant
            reference_day = (instant // _DAY_SECONDS) + _EPOCH_ORDINAL
            yield instant
