# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Which simulator seeds serve which use; the uses never share a seed, so nothing is selected on evaluation seeds.

A seed fixes an episode's initial state (object placement, robot joint noise). The commands default to their
use's range and say when they are given seeds of another use:

    demos        0 ..   9 999   hapo collect-demos (the base policy's training data)
    selection   10 000 .. 19 999   hapo train-base picks its best epoch on these
    rounds      20 000 .. 49 999   operator rounds of the lifelong loop (their episodes become training data)
    bench       90 000 .. 99 999   benchmarks
    evaluation 100 000 .. 199 999  hapo evaluate-sim for reported figures; never trained or selected on
"""

from __future__ import annotations

import argparse

USES: dict[str, range] = {
    'demos': range(0, 10_000),
    'selection': range(10_000, 20_000),
    'rounds': range(20_000, 50_000),
    'bench': range(90_000, 100_000),
    'evaluation': range(100_000, 200_000),
}


class SeedError(ValueError):
    """Seeds not written as A:B with 0 <= A < B; the text quotes them."""


def parse(text: str) -> range:
    """'A:B' -> range(A, B) (B excluded)."""
    try:
        a, b = (int(x) for x in text.split(':'))
    except ValueError:
        raise SeedError(f'seeds {text!r}: expected A:B, e.g. 100000:100050 (B excluded)') from None
    if not 0 <= a < b:
        raise SeedError(f'seeds {text!r}: need 0 <= A < B')
    return range(a, b)


def arg(text: str) -> range:
    """``parse`` as an argparse type (its message, not argparse's generic one)."""
    try:
        return parse(text)
    except SeedError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def first(use: str, n: int) -> range:
    """The first ``n`` seeds of ``use``."""
    r = USES[use]
    return range(r.start, min(r.start + n, r.stop))


def uses_of(seeds: range) -> list[str]:
    """The uses whose ranges ``seeds`` touches (none: outside every declared range)."""
    return [name for name, r in USES.items() if seeds.start < r.stop and r.start < seeds.stop]


def check(seeds: range, use: str) -> str | None:
    """None when every seed lies in ``use``'s range, else a one-line warning naming the other uses."""
    others = [u for u in uses_of(seeds) if u != use]
    if not others and seeds.start >= USES[use].start and seeds.stop <= USES[use].stop:
        return None
    where = f'also {", ".join(others)} seeds' if others else 'outside every declared range'
    r = USES[use]
    return (f'seeds {seeds.start}:{seeds.stop} are not all {use} seeds ({r.start}:{r.stop}): {where} '
            '(hapo_sim.seeds)')
