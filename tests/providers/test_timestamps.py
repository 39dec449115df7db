"""Tolerant timestamp parsing: every accepted form, every refused one, and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poller.providers.fields import PLAUSIBLE_YEARS, parse_timestamp, read_timestamp

T = datetime(2019, 1, 23, 18, 10, 2, 574000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-01-23T18:10:02.574Z", T),
        ("2019-01-23T18:10:02.574z", T),
        ("2019-01-23t18:10:02.574Z", T),
        ("2019-01-23 18:10:02.574Z", T),
        ("  2019-01-23T18:10:02.574Z\n", T),
        ("2019-01-23T18:10:02.574+00:00", T),
        ("2019-01-23T20:10:02.574+02:00", T),
        ("2019-01-23T20:10:02.574+0200", T),
        ("2019-01-23T20:10:02.574+02", T),
        ("2019-01-23T13:40:02.574-04:30", T),
        ("2019-01-23T18:10:02.574 +00:00", T),
        ("2019-01-23T18:10:02,574Z", T),
        ("2019-01-23T18:10:02.5740000000000001Z", T),
        ("2019-01-23T18:10:02.57400099Z", T),  # truncated, not rounded
        ("2019-01-23T18:10:02.5Z", T.replace(microsecond=500000)),
        ("2019-01-23T18:10:02Z", T.replace(microsecond=0)),
        ("2019-01-23T18:10Z", T.replace(second=0, microsecond=0)),
        ("2019-01-23T18:10:02.123456789Z", T.replace(microsecond=123456)),
    ],
)
def test_accepted_forms_parse_to_utc_without_warning(text: str, expected: datetime) -> None:
    """Zulu, offsets, separators and any fraction length all parse to the same UTC instant."""
    warnings: list[str] = []
    assert parse_timestamp(text, "f", warnings) == expected
    assert warnings == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-01-23T18:10:02.574", T),
        ("2019-01-23 18:10:02", T.replace(microsecond=0)),
        ("2019-01-23", datetime(2019, 1, 23, tzinfo=UTC)),
    ],
)
def test_missing_zone_is_assumed_utc_with_warning(text: str, expected: datetime) -> None:
    """A timestamp without a zone is read as UTC and the assumption is noted."""
    warnings: list[str] = []
    assert parse_timestamp(text, "conference.created_at", warnings) == expected
    assert len(warnings) == 1
    assert "assumed UTC" in warnings[0]
    assert "conference.created_at" in warnings[0]


@pytest.mark.parametrize(
    "value",
    [
        "", "yesterday", "2019-13-01T00:00:00Z", "2019-02-30T00:00:00Z",
        "2019-01-23T25:00:00Z", "2019-01-23T18:10:60Z", "2019-01-23T18:10:02+24:00",
        "2019-01-23T18:10:02+05:99", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
        "２０１９-01-23T18:10:02Z", "2019-01-23T18:10:02ZZ", 1548267002, 1.5, True, [], {},
    ],
)
def test_unreadable_values_give_none_and_a_warning(value: object) -> None:
    """Garbage, impossible dates, calendar overflow and non-strings give None plus a warning."""
    warnings: list[str] = []
    assert parse_timestamp(value, "f", warnings) is None
    assert len(warnings) == 1


def test_none_is_silently_none() -> None:
    """An absent or null timestamp is simply not reported: no warning."""
    warnings: list[str] = []
    assert parse_timestamp(None, "f", warnings) is None
    assert warnings == []


def test_warning_quotes_long_values_briefly() -> None:
    """A huge unreadable value is quoted in a warning of bounded length."""
    warnings: list[str] = []
    parse_timestamp("x" * 100_000, "f", warnings)
    assert len(warnings[0]) < 120


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                               timezone(timedelta(hours=-8))])))
def test_isoformat_round_trips(moment: datetime) -> None:
    """Any aware datetime written as ISO 8601 parses back to the same instant, in UTC; only a
    date outside the plausible years is noted."""
    warnings: list[str] = []
    parsed = parse_timestamp(moment.isoformat(), "f", warnings)
    assert parsed == moment
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)
    plausible = parsed.year in PLAUSIBLE_YEARS
    assert warnings == ([] if plausible else [f"f: implausible date {moment.isoformat()!r} "
                                               "kept as given"])


@given(st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.booleans()))
def test_never_raises(value: object) -> None:
    """No input makes the parser raise; the result is None or aware UTC."""
    parsed = parse_timestamp(value, "f", [])
    assert parsed is None or parsed.utcoffset() == timedelta(0)


@given(st.lists(st.sampled_from("0123456789"), min_size=17, max_size=17),
       st.sampled_from(["", "0", "1", "9", "a", "٣", " "]), st.integers(0, 16))
def test_the_providers_form_reads_as_every_other_form(digits: list[str], odd: str,
                                                      where: int) -> None:
    """``2019-01-23T18:10:02.574Z``, read in C, reads exactly as the regular expression reads
    it: the same instant, the same warnings (an impossible date, an implausible year), and a
    string of that length and layout with another character among the digits the same way."""
    if odd:
        digits[where] = odd
    text = "{}{}{}{}-{}{}-{}{}T{}{}:{}{}:{}{}.{}{}{}Z".format(*digits)
    fast: list[str] = []
    slow: list[str] = []
    assert parse_timestamp(text, "t", fast) == read_timestamp(text, "t", slow)
    assert fast == slow


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_any_moment_in_the_providers_form_reads_as_every_other_form(moment: datetime) -> None:
    """Every moment written as the providers write it (milliseconds, ``Z``) reads the same
    both ways, implausible years (noted) included."""
    text = (f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z")
    fast: list[str] = []
    slow: list[str] = []
    assert parse_timestamp(text, "t", fast) == read_timestamp(text, "t", slow)
    assert fast == slow
