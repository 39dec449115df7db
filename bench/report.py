"""What ``bench/throughput.py`` prints: the table, polls in flight against the limits, the goals.

Every figure is explained in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import math

from baselines import REQUESTS_PER_POLL
from poller_run import Case, Result

LABEL = 51
PROVIDERS = ("telnyx", "bandwidth")


def _db(result: Result) -> str:
    return result.label.rsplit(" ", 1)[-1]


def _latency(result: Result) -> float:
    """The simulated latency of a run, in ms (from its label: ``… 80ms sqlite``)."""
    return float(result.label.rsplit(" ", 2)[-2].removesuffix("ms"))


def _naive_rates(results: list[Result]) -> dict[tuple[float, str], float]:
    return {(_latency(r), _db(r)): r.rate for r in results if r.label.startswith("naive")}


def _x_floor(r: Result) -> float | None:
    if r.floor_cpu_per_1k is None or not r.floor_cpu_per_1k:
        return None
    return r.cpu_per_1k / r.floor_cpu_per_1k


def print_table(results: list[Result]) -> None:
    naive = _naive_rates(results)
    print()
    print(f"{'run':<{LABEL}} {'polls/s':>8} {'x naive':>8} {'CPU s/1k':>9} {'floor':>7} "
          f"{'CPU x':>7} {'peak RSS':>9} {'hist rows':>10} {'late p50':>9} {'late p99':>9} "
          f"{'failed':>6}")
    print(f"{'':<{LABEL}} {'':>8} {'':>8} {'polls':>9} {'s/1k':>7} {'floor':>7} {'MB':>9} "
          f"{'/poll':>10} {'s':>9} {'s':>9} {'':>6}")
    for r in results:
        key = (_latency(r), _db(r))
        x_naive = (f"{r.rate / naive[key]:.1f}x" if r.label.startswith("ours")
                   and " max " in r.label and naive.get(key) else "")
        rows = f"{r.history_rows / r.polls:.3f}" if r.history_rows is not None and r.polls \
            else ""
        late = [f"{v:.2f}" for v in r.late] if r.late else ["", ""]
        ratio = _x_floor(r)
        floor = f"{r.floor_cpu_per_1k:.2f}" if r.floor_cpu_per_1k is not None else ""
        print(f"{r.label:<{LABEL}} {r.rate:8.0f} {x_naive:>8} {r.cpu_per_1k:9.2f} "
              f"{floor:>7} {f'{ratio:.2f}x' if ratio is not None else '':>7} "
              f"{r.peak_rss_mb or 0:9.0f} {rows:>10} {late[0]:>9} {late[1]:>9} "
              f"{r.failures:>6}")
        if r.floor_rate is not None and r.floor_rate < 0.95 * r.rate:
            r.notes.append(f"the floor reached only {r.floor_rate:.0f} polls/s")
        for note in r.notes:
            print(f"    {note}")


def demand(case: Case, slots: int, connections: int) -> dict[str, object]:
    """What ``case``'s schedule needs at its latency, and the polls/s the limits allow."""
    latency = case.latency_ms / 1000
    counts = case.counts()
    per_poll = sum(n * REQUESTS_PER_POLL[p] * latency for p, n in counts.items()) / case.targets
    bounds = [slots / per_poll] if per_poll else []
    for provider, n in counts.items():
        held = n / case.targets * REQUESTS_PER_POLL[provider] * latency
        if held:
            bounds.append(connections / held)
    scheduled = case.scenario != "max"
    due = {p: n / case.interval for p, n in counts.items()} if scheduled else {}
    return {
        "due": sum(due.values()) if scheduled else None,
        "need": sum(d * REQUESTS_PER_POLL[p] * latency for p, d in due.items())
        if scheduled else None,
        "conns": {p: d * REQUESTS_PER_POLL[p] * latency for p, d in due.items()},
        "allow": min(bounds) if bounds else math.inf,
    }


def _pair(values: dict[str, float], digits: int = 0) -> str:
    return "/".join(f"{values[p]:.{digits}f}" if p in values else "-" for p in PROVIDERS)


def print_in_flight(results: list[Result], connections: int) -> None:
    """Per run of the poller: polls in flight needed and measured against the limits."""
    print(f"\npolls in flight against the limits (poll slots: their 'auto' limit at the end of "
          f"the window; {connections} connections per account; pairs are Telnyx/Bandwidth)")
    print(f"{'run':<{LABEL}} {'due/s':>6} {'need':>5} {'in':>5} {'slots':>5} {'conns':>9} "
          f"{'conns':>9} {'poll ms':>11} {'bare':>7} {'poll ms':>9} {'limits':>7} "
          f"{'polls/s':>8} {'late p99':>9}")
    print(f"{'':<{LABEL}} {'':>6} {'':>5} {'flight':>5} {'':>5} {'need':>9} {'busy':>9} "
          f"{'measured':>11} {'ms':>7} {'ours/flr':>9} {'allow/s':>7} {'':>8} {'s':>9}")
    for r in results:
        if r.case is None:
            continue
        slots = r.slots or 0
        need = demand(r.case, slots, connections)
        latency = r.case.latency_ms / 1000
        by = r.by_provider
        total_seconds = sum(v["poll_seconds"] for v in by.values())
        in_flight = total_seconds / r.seconds
        poll_ms = {p: 1000 * v["poll_seconds"] / v["polls"] for p, v in by.items() if v["polls"]}
        busy = {p: v["requests"] * latency / r.seconds for p, v in by.items()}
        bare = {p: 1000 * REQUESTS_PER_POLL[p] * latency for p in r.case.counts()}
        mean = 1000 * total_seconds / r.polls if r.polls else math.nan
        versus = f"{mean:.0f}/{r.floor_poll_ms:.0f}" if r.floor_poll_ms is not None else ""
        due = f"{need['due']:.0f}" if need["due"] is not None else "max"
        needed = f"{need['need']:.0f}" if need["need"] is not None else ""
        conns = need["conns"]
        allow = need["allow"]
        assert isinstance(conns, dict)
        assert isinstance(allow, float)
        print(f"{r.label:<{LABEL}} {due:>6} {needed:>5} {in_flight:5.1f} {slots:>5} "
              f"{_pair(conns) if conns else '':>9} {_pair(busy, 1):>9} "
              f"{_pair(poll_ms, 1):>11} {_pair(bare):>7} {versus:>9} "
              f"{'-' if math.isinf(allow) else f'{allow:.0f}':>7} {r.rate:8.0f} "
              f"{r.late[1] if r.late else math.nan:9.2f}")


def print_goals(results: list[Result]) -> None:
    """The issue's done-when figures, as measured in this run."""
    ours = [r for r in results if r.case is not None]
    steady = [r for r in ours if r.case is not None and r.case.scenario == "steady"]
    naive = _naive_rates(results)
    print("\ngoals (the issue's done-when figures)")

    def goal(text: str, met: bool | None, value: str) -> None:
        mark = "n/a" if met is None else ("met" if met else "NOT met")
        print(f"  {text:<58} {mark:<8} {value}")

    def short(r: Result) -> str:
        assert r.case is not None
        c = r.case
        return f"{c.providers} {c.targets:,} {c.latency_ms:g}ms {c.database}"

    cpu = [(short(r), x) for r in steady if (x := _x_floor(r)) is not None]
    goal("CPU per poll <= 2x the same-mix, same-rate floor (steady)",
         all(x <= 2 for _, x in cpu) if cpu else None,
         ", ".join(f"{name} {x:.2f}x" for name, x in cpu))
    big = [r for r in steady if r.case is not None and r.case.targets == 10_000
           and r.case.providers == "mixed" and r.case.interval == 10 and r.case.latency_ms == 80]
    goal("10,000 mixed @10 s, 80 ms: p99 lateness < 1 s",
         all(r.late is not None and r.late[1] < 1 for r in big) if big else None,
         ", ".join(f"{_db(r)} {r.late[1]:.2f} s" for r in big if r.late))
    goal("10,000 mixed @10 s, 80 ms: peak RSS < 150 MB",
         all((r.peak_rss_mb or 0) < 150 for r in big) if big else None,
         ", ".join(f"{_db(r)} {r.peak_rss_mb:.0f} MB" for r in big))
    saturated = [r for r in ours if r.case is not None and r.case.scenario == "max"]
    for latency, target in ((80.0, 50.0), (0.0, None)):
        speed = [(_db(r), r.rate / naive[(latency, _db(r))]) for r in saturated
                 if _latency(r) == latency and naive.get((latency, _db(r)))]
        text = (f"saturated at {latency:g} ms >= {target:g}x the naive poller" if target
                else f"(saturated at {latency:g} ms, x the naive poller: no goal)")
        goal(text, (all(x >= target for _, x in speed) if speed else None) if target else None,
             ", ".join(f"{db} {x:.1f}x" for db, x in speed))
    zero = [r.history_rows for r in steady if r.history_rows is not None]
    goal("0 history rows for unchanged polls", all(n == 0 for n in zero) if zero else None,
         f"{sum(zero)} rows over {sum(r.polls for r in steady):,} steady polls")
