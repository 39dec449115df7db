"""``poller report timeline`` through the real CLI, on history recorded by the real recorder.

The pictures are parsed back as XML: a lane per member, a band per status transition, a sharp
edge where the provider gave the time and a hatched bracket exactly where a time is known only
between two polls; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from databases import record
from factories import (
    at,
    bandwidth_member,
    bandwidth_observation,
    bandwidth_target,
    telnyx_member,
    telnyx_observation,
    telnyx_target,
)

from poller.commands import CliState
from poller.commands.report import report
from poller.commands.timeline import write_busiest
from poller.model import PollResult

SVG = "{http://www.w3.org/2000/svg}"
STANDUP = telnyx_target("conf-standup")
DAILY = bandwidth_target("conf-bw-1")


def history() -> list[PollResult]:
    """A Telnyx conference timed by the provider, a Bandwidth one timed only by polls."""
    def p1(**state: Any) -> Any:
        return telnyx_member("p1", created_at=-50, **state)

    def p2(**state: Any) -> Any:
        return telnyx_member("p2", created_at=-40, muted=True, **state)

    return [
        telnyx_observation(at=0, target=STANDUP, members=[p1(), p2()]),
        telnyx_observation(at=60, target=STANDUP, members=[p1(on_hold=True, updated_at=58),
                                                           p2()]),
        telnyx_observation(at=120, target=STANDUP, members=[
            p1(updated_at=118), p2(status="left", updated_at=115)]),
        telnyx_observation(at=180, target=STANDUP, status="completed", updated_at=178,
                           end_reason="all_left", members=[
                               p1(status="left", updated_at=176),
                               p2(status="left", updated_at=115)]),
        bandwidth_observation(at=0, target=DAILY, created_at=-100, members=[
            bandwidth_member("c1"), bandwidth_member("c2", mute=True)]),
        bandwidth_observation(at=40, target=DAILY, created_at=-100, members=[
            bandwidth_member("c1", hold=True), bandwidth_member("c2", mute=True)]),
        bandwidth_observation(at=80, target=DAILY, created_at=-100,
                              members=[bandwidth_member("c1")]),
        bandwidth_observation(at=100, target=DAILY, created_at=-100,
                              members=[bandwidth_member("c1"), bandwidth_member("c2")]),
        bandwidth_observation(at=120, target=DAILY, created_at=-100, completed_at=118),
    ]



@pytest.fixture
def recorded(database_url: str) -> str:
    """A database holding :func:`history`."""
    return record(database_url, history())


def invoke(url: str, *args: str) -> Result:
    """``poller report timeline ARGS --database-url URL``."""
    return CliRunner().invoke(report, ["timeline", *args, "--database-url", url],
                              obj=CliState(config_path=None))


def iso(seconds: float) -> str:
    """``at(seconds)`` as the pictures' ``data-`` attributes write it."""
    return at(seconds).isoformat().replace("+00:00", "Z")


def pictures(path: Path) -> list[ET.Element]:
    """Every ``<svg>`` of an HTML page (or the one of an SVG file), parsed as XML."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".svg":
        return [ET.fromstring(text.split("?>", 1)[1])]
    return [ET.fromstring(match) for match in re.findall(r"<svg\b.*?</svg>", text, re.S)]


def find(svgs: list[ET.Element], tag: str, cls: str) -> list[ET.Element]:
    """Elements ``tag`` whose class list holds ``cls``."""
    return [e for svg in svgs for e in svg.iter(f"{SVG}{tag}")
            if cls in (e.get("class") or "").split()]


def lanes(svgs: list[ET.Element]) -> dict[str, ET.Element]:
    """Each member's lane by member ID."""
    return {str(g.get("data-member")): g for g in find(svgs, "g", "lane")}


def in_lane(lane: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    """Shapes of one lane."""
    return [e for e in lane.iter(f"{SVG}{tag}") if cls in (e.get("class") or "").split()]


def test_a_provider_timed_conference_has_sharp_edges(recorded: str, tmp_path: Path) -> None:
    """Telnyx gave every member time: sharp edges at exactly those times, no hatching in the
    lanes; the first status is hatched back to creation (first seen in progress)."""
    out = tmp_path / "standup.html"
    result = invoke(recorded, "telnyx", "conf-standup", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (2 members, 2 status transitions)" in result.output
    svgs = pictures(out)
    bands = find(svgs, "rect", "band")
    assert [b.get("data-status") for b in bands] == ["in_progress", "completed"]
    brackets = find(svgs, "rect", "bracket")
    assert [(b.get("data-edge"), b.get("data-from"), b.get("data-to")) for b in brackets] == [
        ("in_progress", iso(-60), iso(0))]
    by_member = lanes(svgs)
    assert set(by_member) == {"p1", "p2"}
    edges = {m: [e.get("data-at") for e in in_lane(g, "line", "exact")]
             for m, g in by_member.items()}
    assert edges == {"p1": [iso(-50), iso(176)], "p2": [iso(-40), iso(115)]}
    assert [s.get("class") for s in in_lane(by_member["p1"], "rect", "span")] == [
        "span on_hold"]
    assert [s.get("class") for s in in_lane(by_member["p2"], "rect", "span")] == [
        "span muted"]
    completed = find(svgs, "line", "exact")
    assert iso(178) in {e.get("data-at") for e in completed}
    page = out.read_text()
    assert "all_left" in page
    assert "<script" not in page


def test_a_poll_timed_conference_is_hatched_between_polls(recorded: str,
                                                          tmp_path: Path) -> None:
    """Bandwidth gives no member times: each join and leave is a bracket between the two polls
    around it (from creation for the first poll; the members the completing poll no longer
    listed left after the poll before); only its completion is exact (completedTime)."""
    out = tmp_path / "daily.svg"
    result = invoke(recorded, "bandwidth", "conf-bw-1", "--output", str(out))
    assert result.exit_code == 0, result.output
    svgs = pictures(out)
    assert svgs[0].tag == f"{SVG}svg"
    by_member = lanes(svgs)
    assert set(by_member) == {"c1", "c2"}
    assert by_member["c2"].get("data-stays") == "2"
    brackets = {m: [(b.get("data-edge"), b.get("data-from"), b.get("data-to"))
                    for b in in_lane(g, "rect", "bracket")] for m, g in by_member.items()}
    assert brackets == {
        "c1": [("joined", iso(-100), iso(0)), ("left", iso(100), iso(120))],
        "c2": [("joined", iso(-100), iso(0)), ("left", iso(40), iso(80)),
               ("joined", iso(80), iso(100)), ("left", iso(100), iso(120))],
    }
    # The only exact time is the completion (the legend's sample edge has no time).
    assert [e.get("data-at") for e in find(svgs, "line", "exact") if e.get("data-at")] == [
        iso(118)]
    assert not [e for g in by_member.values() for e in in_lane(g, "line", "exact")]
    assert [s.get("class") for s in in_lane(by_member["c1"], "rect", "span")] == [
        "span on_hold"]
    assert [b.get("data-status") for b in find(svgs, "rect", "band")] == [
        "in_progress", "completed"]


def test_two_hundred_members_get_a_lane_each_without_colliding(database_url: str,
                                                               tmp_path: Path) -> None:
    """200 members: 200 lanes, each label on its own line, the picture tall enough."""
    target = telnyx_target("conf-big")
    members = [telnyx_member(f"member-{i:03d}-with-a-rather-long-identifier", created_at=-i)
               for i in range(200)]
    record(database_url, [telnyx_observation(at=0, target=target, members=members)])
    out = tmp_path / "big.html"
    assert invoke(database_url, "telnyx", "conf-big", "--output", str(out)).exit_code == 0
    svgs = pictures(out)
    by_member = lanes(svgs)
    assert len(by_member) == 200
    label_y = sorted(float(str(t.get("y"))) for t in find(svgs, "text", "member"))
    assert len(label_y) == 200
    assert min(b - a for a, b in itertools.pairwise(label_y)) >= 20
    assert float(str(svgs[1].get("height"))) >= 200 * 20


def test_the_index_links_a_page_per_conference(recorded: str, tmp_path: Path) -> None:
    """``--since`` writes index.html linking one existing page per conference."""
    out = tmp_path / "pages"
    result = invoke(recorded, "--since", "2025-01-01", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert "2 conference pages" in result.output
    links = re.findall(r'href="([^"]+)"', (out / "index.html").read_text())
    assert len(links) == 2
    for link in links:
        page = (out / link).read_text()
        assert 'href="index.html"' in page
        assert "<svg" in page
    only = invoke(recorded, "bandwidth", "--since", "2025-01-01", "--output", str(out / "bw"))
    assert only.exit_code == 0
    assert "1 conference pages" in only.output
    none = invoke(recorded, "--since", "2030-01-01", "--output", str(out / "none"))
    assert "No conferences match." in (out / "none" / "index.html").read_text()
    assert none.exit_code == 0


def test_text_from_the_database_is_escaped(database_url: str, tmp_path: Path) -> None:
    """A conference or member ID with markup in it stays text."""
    target = telnyx_target("conf-<b>&\"x\"")
    record(database_url, [telnyx_observation(
        at=0, target=target, members=[telnyx_member("<script>alert(1)</script>",
                                                    created_at=-5)])])
    out = tmp_path / "odd.html"
    assert invoke(database_url, "telnyx", target.conference_id, "--output",
                  str(out)).exit_code == 0
    assert "<script>" not in out.read_text()
    assert set(lanes(pictures(out))) == {"<script>alert(1)</script>"}


@pytest.mark.parametrize(("args", "code", "message"), [
    (["telnyx", "nope"], 1, "no telnyx conference 'nope' is recorded"),
    ([], 2, "name a conference (PROVIDER ID) or give --since"),
    (["telnyx", "conf-standup", "--since", "1d"], 2, "not both"),
    (["telnyx", "conf-standup", "--output", "x.png"], 2, "must end in .html or .svg"),
])
def test_bad_requests_say_what_is_wrong(recorded: str, tmp_path: Path, args: list[str],
                                        code: int, message: str) -> None:
    """Unknown conferences, missing or contradictory arguments and wrong suffixes."""
    result = CliRunner().invoke(report, ["timeline", *args, "--database-url", recorded],
                                obj=CliState(config_path=None))
    assert result.exit_code == code
    assert message in result.output


def test_one_id_in_two_accounts_needs_the_account(database_url: str, tmp_path: Path) -> None:
    """The same conference ID recorded by two accounts: --account chooses."""
    record(database_url, [
        telnyx_observation(at=0, target=telnyx_target("conf-1", account="a")),
        telnyx_observation(at=0, target=telnyx_target("conf-1", account="b")),
    ])
    ambiguous = invoke(database_url, "telnyx", "conf-1", "--output", str(tmp_path / "x.html"))
    assert ambiguous.exit_code == 2
    assert "accounts a, b" in ambiguous.output
    chosen = invoke(database_url, "telnyx", "conf-1", "--account", "b", "--output",
                    str(tmp_path / "x.html"))
    assert chosen.exit_code == 0
    assert "telnyx · b · conf-1" in (tmp_path / "x.html").read_text()


def test_the_demo_page_is_the_busiest_conference(recorded: str, tmp_path: Path) -> None:
    """``poller demo`` shows the conference with the most members; of two with two members
    each, the one with more member events (the Bandwidth one: a rejoin, holds)."""
    path = write_busiest(recorded, tmp_path)
    assert path is not None
    assert path.name == "timeline-bandwidth-conf-bw-1.html"
    assert set(lanes(pictures(path))) == {"c1", "c2"}


def test_glitched_provider_times_neither_crash_nor_stretch_the_picture(
        database_url: str, tmp_path: Path) -> None:
    """A creation time in 1970 or 9999 (kept with a warning) stays off the scale: the page is
    written, with a handful of ticks, and the first sighting is drawn as 'first seen'."""
    for name, created in (("conf-1970", datetime(1970, 1, 1, tzinfo=UTC)),
                          ("conf-9999", datetime(9999, 12, 31, tzinfo=UTC))):
        record(database_url, [telnyx_observation(at=0, target=telnyx_target(name),
                                                 created_at=created, members=[
                                                     telnyx_member("m", created_at=-5)])])
        out = tmp_path / f"{name}.svg"
        result = invoke(database_url, "telnyx", name, "--output", str(out))
        assert result.exit_code == 0, result.output
        svgs = pictures(out)
        assert len(find(svgs, "line", "tick")) <= 2 * 12
        assert [b.get("data-status") for b in find(svgs, "rect", "band")] == ["in_progress"]


def test_no_creation_time_is_drawn_as_first_seen(database_url: str, tmp_path: Path) -> None:
    """Without ``created_at`` the first status has no lower bound: a dashed 'first seen' edge
    at the first poll, neither a sharp edge nor nothing."""
    record(database_url, [telnyx_observation(at=0, target=telnyx_target("conf-x"),
                                             created_at=None)])
    out = tmp_path / "x.svg"
    assert invoke(database_url, "telnyx", "conf-x", "--output", str(out)).exit_code == 0
    edges = [e.get("data-at") for e in find(pictures(out), "line", "first-seen")
             if e.get("data-at")]
    assert edges == [iso(0)]


def test_control_characters_keep_the_svg_readable(database_url: str, tmp_path: Path) -> None:
    """A member ID with control characters still gives well-formed XML."""
    record(database_url, [telnyx_observation(at=0, target=telnyx_target("conf-c"), members=[
        telnyx_member("bad\x01id\x1b[31m", created_at=-5)])])
    out = tmp_path / "c.svg"
    assert invoke(database_url, "telnyx", "conf-c", "--output", str(out)).exit_code == 0
    assert set(lanes(pictures(out))) == {"bad\ufffdid\ufffd[31m"}


def test_conferences_whose_names_clean_up_alike_get_their_own_pages(
        database_url: str, tmp_path: Path) -> None:
    """'a/b' and 'a b' both clean up to 'a_b': the index still writes two pages."""
    record(database_url, [telnyx_observation(at=0, target=telnyx_target("a/b")),
                          telnyx_observation(at=1, target=telnyx_target("a b"))])
    out = tmp_path / "pages"
    assert invoke(database_url, "--since", "2025-01-01", "--output", str(out)).exit_code == 0
    links = re.findall(r'href="([^"]+)"', (out / "index.html").read_text())
    assert len(set(links)) == 2
    assert all((out / link).exists() for link in links)
    assert all("/" not in link for link in links)
