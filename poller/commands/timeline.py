"""``poller report timeline``: a conference's life as a picture (see ``docs/reports.md``).

Examples::

    poller report timeline telnyx 3f1c…             # ./timeline-telnyx-3f1c….html
    poller report timeline bandwidth conf-1a2b --output conf.svg
    poller report timeline --since 24h              # ./timelines/index.html and a page each
    poller report timeline telnyx --since 7d --account telnyx-main --output week/

The page is self-contained HTML with an inline SVG (no script, no network); ``.svg`` writes the
picture alone. Like every report it reads in one read-only transaction, safe beside a running
daemon.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from poller.commands import DATABASE_URL, CliState, pass_state, since_option
from poller.errors import StoreUnavailable
from poller.model import Provider, utc_now
from poller.reports.timeline import build_timeline
from poller.reports.timeline_page import page_name, render_html, render_index, render_svg
from poller.store.timeline import (
    busiest_conference,
    find_conferences,
    list_conferences,
    load_timeline,
    reading,
)

PAGE_SUFFIXES = (".html", ".htm", ".svg")
"""What ``--output`` may end in for one conference (an index's ``--output`` is a directory)."""

DEFAULT_INDEX_LIMIT = 200
"""Pages an index writes unless ``--limit`` says otherwise."""


@click.command()
@click.argument("provider", required=False, type=click.Choice([p.value for p in Provider]))
@click.argument("conference_id", required=False)
@click.option("--account", default=None, metavar="NAME",
              help="The account (its name in the config file): needed when two accounts "
                   "recorded the same conference ID; with --since, only this account.")
@click.option("--since", callback=since_option, default=None, metavar="WHEN",
              help="Write an index page of the conferences started since WHEN (2025-03-01, "
                   "an age such as 24h or 7d) and a page for each, instead of one page.")
@click.option("--output", type=click.Path(path_type=Path), default=None, metavar="PATH",
              help="One conference: the file to write, .html (the default) or .svg "
                   "(default: ./timeline-PROVIDER-ID.html). With --since: the directory "
                   "(default: ./timelines).")
@click.option("--limit", type=click.IntRange(min=0), default=DEFAULT_INDEX_LIMIT,
              show_default=True, metavar="N",
              help="With --since: at most N conferences, newest first; 0 for all.")
@click.option("--database-url", "database_url", type=DATABASE_URL, default=None,
              metavar="URL", help="Database to read (default: the configured one).")
@pass_state
def timeline(state: CliState, provider: str | None, conference_id: str | None,
             account: str | None, since: datetime | None, output: Path | None, limit: int,
             database_url: str | None) -> None:
    """Draw one conference (PROVIDER ID) as an HTML page or SVG, or with --since an index.

    Status bands, a lane per member from join to leave with muted, on-hold and coaching spans
    shaded; a time the provider gave is a sharp edge, a time known only between two polls a
    hatched span.
    """
    url = database_url or state.database_url()
    try:
        if conference_id is not None:
            if since is not None:
                raise click.UsageError("name one conference or give --since, not both")
            assert provider is not None
            path = output or Path(page_name(provider, conference_id, account))
            if path.is_dir():
                path = path / page_name(provider, conference_id, account)
            _check_suffix(path)
            click.echo(write_page(url, provider, conference_id, account, path))
        elif since is not None:
            directory = output or Path("timelines")
            if directory.suffix.lower() in PAGE_SUFFIXES:
                raise click.BadParameter(f"{str(directory)!r}: with --since, --output names a "
                                         "directory", param_hint="'--output'")
            click.echo(write_index(url, directory, since=since, provider=provider,
                                   account=account, limit=limit or None))
        else:
            raise click.UsageError("name a conference (PROVIDER ID) or give --since")
    except StoreUnavailable as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:
        where = error.filename or output or "the page"
        raise click.ClickException(f"cannot write {where}: {error.strerror or error}") from error


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in PAGE_SUFFIXES:
        raise click.BadParameter(f"{str(path)!r} must end in .html or .svg",
                                 param_hint="'--output'")


def write_page(url: str, provider: str, conference_id: str, account: str | None,
               path: Path) -> str:
    """Write one conference's page (or SVG, by ``path``'s suffix); returns what to print."""
    with reading(url) as conn:
        found = find_conferences(conn, provider, conference_id, account)
        if not found:
            which = f" in account {account}" if account else ""
            raise click.ClickException(
                f"no {provider} conference {conference_id!r} is recorded{which}")
        if len(found) > 1:
            accounts = ", ".join(name for _, name in found)
            raise click.UsageError(f"{provider} conference {conference_id!r} is recorded in "
                                   f"accounts {accounts}: choose one with --account")
        facts = load_timeline(conn, found[0][0])
    drawn = build_timeline(facts)
    text = (render_svg(drawn) if path.suffix.lower() == ".svg"
            else render_html(drawn, generated_at=utc_now()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return (f"wrote {path} ({len(drawn.lanes)} members, {len(drawn.bands)} status "
            f"transitions)")


def write_index(url: str, directory: Path, *, since: datetime, provider: str | None,
                account: str | None, limit: int | None) -> str:
    """Write ``index.html`` and a page per conference into ``directory``; returns what to
    print."""
    if directory.exists() and not directory.is_dir():
        raise click.BadParameter(f"{str(directory)!r} is a file; with --since, --output names "
                                 "a directory", param_hint="'--output'")
    now = utc_now()
    with reading(url) as conn:
        entries = list_conferences(conn, since=since, provider=provider, account=account,
                                   limit=None if limit is None else limit + 1)
        truncated = limit is not None and len(entries) > limit
        entries = entries[:limit] if limit is not None else entries
        directory.mkdir(parents=True, exist_ok=True)
        pages = [page_name(e.provider, e.conference_id, e.account, unique=True)
                 for e in entries]
        for entry, page in zip(entries, pages, strict=True):  # one in memory at a time
            picture = build_timeline(load_timeline(conn, entry.pk))
            (directory / page).write_text(
                render_html(picture, generated_at=now, index="index.html"), encoding="utf-8")
    heading = f"Conferences started since {since:%Y-%m-%d %H:%M} UTC"
    index = directory / "index.html"
    index.write_text(render_index(entries, pages, generated_at=now, heading=heading),
                     encoding="utf-8")
    more = f" (only the newest {limit}; --limit 0 writes all)" if truncated else ""
    return f"wrote {index} and {len(pages)} conference pages{more}"


def write_busiest(url: str, directory: Path) -> Path | None:
    """The page of the conference with the most members, written into ``directory`` (for
    ``poller demo``); ``None`` when nothing is recorded."""
    with reading(url) as conn:
        pk = busiest_conference(conn)
        if pk is None:
            return None
        facts = load_timeline(conn, pk)
    c = facts.conference
    path = directory / page_name(c.provider, c.conference_id)
    path.write_text(render_html(build_timeline(facts), generated_at=utc_now()),
                    encoding="utf-8")
    return path
