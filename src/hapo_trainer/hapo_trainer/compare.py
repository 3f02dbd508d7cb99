# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Closed-loop outcomes: the result file of ``hapo evaluate-sim``, its confidence interval, paired comparison.

    hapo compare base.json round1.json [--json]

A result file (written by ``hapo evaluate-sim``)::

    {"policy": ..., "policy_id": ..., "scenario": ..., "seeds": [a, b],
     "episodes": [{"seed", "success", "steps", "takeovers", "human_steps"}, ...],
     "success_rate": ..., "wilson95": [lo, hi]}

Two policies evaluated on the same seeds face the same initial states, so the comparison is paired: on the
common seeds it counts the seeds only A solves (b) and only B solves (c), and McNemar's exact test asks how
likely a split at least that uneven is if neither policy is better (two-sided binomial, p = 0.5, n = b + c).
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

EPISODE_KEYS = ('seed', 'success', 'steps', 'takeovers', 'human_steps')
Z95 = 1.959963984540054


class ResultError(ValueError):
    """An unreadable or malformed result file; the text names the file and the field."""


def wilson95(successes: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a success rate (0, 1) for n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = p + Z95 ** 2 / (2 * n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n))
    scale = 1 + Z95 ** 2 / n
    lo = 0.0 if successes == 0 else max(0.0, (centre - half) / scale)  # exact ends, not 5e-17
    hi = 1.0 if successes == n else min(1.0, (centre + half) / scale)
    return lo, hi


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b seeds won only by A and c won only by B."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def summarize(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """``success_rate`` and ``wilson95`` of a list of episodes."""
    wins = sum(bool(e['success']) for e in episodes)
    n = len(episodes)
    return {'success_rate': wins / n if n else 0.0, 'wilson95': list(wilson95(wins, n))}


def load_result(path: Path) -> dict[str, Any]:
    """A result file, checked field by field (ResultError names the file and the field)."""
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultError(f'{path}: unreadable: {exc}') from None
    if not isinstance(body, dict) or not isinstance(body.get('episodes'), list):
        raise ResultError(f'{path}: no "episodes" list (not a hapo evaluate-sim result)')
    seen: set[int] = set()
    for i, ep in enumerate(body['episodes']):
        missing = [k for k in EPISODE_KEYS if not isinstance(ep, dict) or k not in ep]
        if missing:
            raise ResultError(f'{path}: episodes[{i}] lacks {", ".join(missing)}')
        if not isinstance(ep['seed'], int) or ep['seed'] in seen:
            raise ResultError(f'{path}: episodes[{i}].seed {ep["seed"]!r} is not a new integer seed')
        seen.add(ep['seed'])
    return body


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Paired outcome counts of two results on their common seeds, and McNemar's exact p-value."""
    sa = {e['seed']: bool(e['success']) for e in a['episodes']}
    sb = {e['seed']: bool(e['success']) for e in b['episodes']}
    common = sorted(sa.keys() & sb.keys())
    both = sum(sa[s] and sb[s] for s in common)
    only_a = [s for s in common if sa[s] and not sb[s]]
    only_b = [s for s in common if sb[s] and not sa[s]]
    n = len(common)
    return {
        'a': a.get('policy'), 'b': b.get('policy'), 'common_seeds': n,
        'a_success_rate': (both + len(only_a)) / n if n else 0.0,
        'b_success_rate': (both + len(only_b)) / n if n else 0.0,
        'both': both, 'neither': n - both - len(only_a) - len(only_b),
        'only_a': len(only_a), 'only_b': len(only_b), 'only_a_seeds': only_a, 'only_b_seeds': only_b,
        'mcnemar_p': mcnemar_exact(len(only_a), len(only_b)),
    }


def _report(c: dict[str, Any], name_a: str, name_b: str) -> str:
    n = c['common_seeds']
    return '\n'.join([
        f'{n} common seeds',
        f'  A {name_a}: {c["a_success_rate"]:.1%} success',
        f'  B {name_b}: {c["b_success_rate"]:.1%} success',
        f'  both succeed {c["both"]}, neither {c["neither"]}, only A {c["only_a"]}, only B {c["only_b"]}',
        f'  McNemar exact p = {c["mcnemar_p"]:.4g} (two-sided)',
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog='hapo compare', description='Paired comparison of two hapo evaluate-sim '
                                 'results on their common seeds: wins, losses and an exact McNemar p-value.')
    ap.add_argument('a', type=Path, metavar='A.json')
    ap.add_argument('b', type=Path, metavar='B.json')
    ap.add_argument('--json', action='store_true', help='print the comparison as one JSON object')
    args = ap.parse_args(argv)
    try:
        a, b = load_result(args.a), load_result(args.b)
    except ResultError as exc:
        print(f'hapo compare: {exc}', file=sys.stderr)
        return 2
    result = compare(a, b)
    if result['common_seeds'] == 0:
        print(f'hapo compare: {args.a} and {args.b} share no seed; nothing to pair', file=sys.stderr)
        return 2
    print(json.dumps(result) if args.json else _report(result, str(args.a), str(args.b)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
