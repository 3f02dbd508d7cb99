# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``hapo uncertainty``: does the policy's uncertainty flag come before the operator's takeovers, and how early?

    hapo uncertainty --calibrate runs/unc/lift_bags --bags runs/unc/lift_far_bags [--quantile 0.95] [--window 20]

Offline, from recorded bags (``hapo evaluate-sim --operator --record DIR`` or a round's ``DIR/bags``): the
policy's entropy is recorded at every observation, also while the operator drives, so the flag of
``hapo_policy.uncertainty`` is replayed step by step exactly as ``policy_node`` raises it.

1. **calibrate**: the threshold is the ``--quantile`` of the per-step entropy peak (max over the 7 dims) over the
   policy-driven steps of the successful episodes of ``--calibrate`` (or ``--threshold`` given).
2. **measure** on ``--bags``: for each takeover (the first step of a run of human steps), whether the flag was
   raised on one of the ``--window`` policy steps before it (since the previous hand-back), and how many steps
   before the takeover it last rose (the lead). As the chance level to compare with: the share of
   ``--window``-step stretches of policy control in the episodes without a takeover that hold a raised flag (a
   flag that is always up precedes every takeover).

Prints a table and writes ``--out`` JSON (every number, per takeover).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hapo_interfaces.enums import ControlSource
from hapo_policy.uncertainty import UncertaintyFlag, calibrate, peaks
from hapo_recorder.bag_reader import BagError, Episode, list_episodes, read_episode
from hapo_recorder.episode import intervention_spans


def step_entropies(ep: Episode) -> np.ndarray:
    """(N, 7) entropy at each executed step's observation (NaN where none was recorded)."""
    by_stamp = dict(zip(ep.entropy_stamps_ns.tolist(), ep.entropies, strict=True))
    nan = np.full(7, np.nan, dtype=np.float32)
    return np.array([by_stamp.get(int(s), nan) for s in ep.step_stamps_ns], dtype=np.float64).reshape(-1, 7)


def load(paths: Sequence[str | Path]) -> tuple[list[Episode], list[str]]:
    """The readable episodes under ``paths`` and one error line per unreadable bag."""
    episodes, errors = [], []
    for path in list_episodes(paths):
        try:
            episodes.append(read_episode(path, decode_images=False))
        except BagError as exc:
            errors.append(str(exc))
    return episodes, errors


def calibration_peaks(episodes: Sequence[Episode]) -> np.ndarray:
    """Entropy peaks of the policy-driven steps of the successful episodes."""
    out = [peaks(step_entropies(ep))[ep.sources == ControlSource.POLICY] for ep in episodes if ep.outcome == 'success']
    return np.concatenate(out) if out else np.zeros(0)


def _flags(ep: Episode, threshold: float, hysteresis: float) -> np.ndarray:
    return UncertaintyFlag(threshold, hysteresis).replay(step_entropies(ep))


def takeovers(ep: Episode, flags: np.ndarray, window: int) -> list[dict[str, Any]]:
    """Per takeover: its step, whether a raised flag was among the ``window`` policy steps before, the lead."""
    rows = []
    policy = ep.sources == ControlSource.POLICY
    prev_end = 0
    for start, end in intervention_spans(ep.sources):  # the window never reaches back into the previous takeover
        before = [i for i in range(start - 1, prev_end - 1, -1) if policy[i]][:window]  # nearest first
        prev_end = end
        raised = [i for i in before if flags[i]]
        lead = None
        if raised:  # the step the flag last rose: walk back from the nearest raised step while it stays up
            first = raised[0]
            while first - 1 >= 0 and flags[first - 1]:
                first -= 1
            lead = start - first
        rows.append({'bag': ep.path.name, 'step': start, 'preceded': bool(raised), 'lead_steps': lead})
    return rows


def chance(episodes: Sequence[tuple[Episode, np.ndarray]], window: int) -> float | None:
    """Share of ``window``-step stretches of policy control without a takeover that hold a raised flag."""
    hits = total = 0
    for ep, flags in episodes:
        if intervention_spans(ep.sources):
            continue
        f = flags[ep.sources == ControlSource.POLICY]
        for a in range(0, len(f) - window + 1):
            hits += bool(f[a:a + window].any())
            total += 1
    return hits / total if total else None


def report(calib: Sequence[Episode], measured: Sequence[Episode], *, quantile: float, threshold: float | None,
           hysteresis: float, window: int) -> dict[str, Any]:
    """Every number of the table (module docstring)."""
    if threshold is None:
        threshold = calibrate(calibration_peaks(calib), quantile)
    flagged = [(ep, _flags(ep, threshold, hysteresis)) for ep in measured]
    rows = [r for ep, f in flagged for r in takeovers(ep, f, window)]
    leads = [r['lead_steps'] for r in rows if r['lead_steps'] is not None]
    policy_steps = [f[ep.sources == ControlSource.POLICY] for ep, f in flagged]
    return {
        'threshold_nats': round(float(threshold), 4), 'quantile': quantile if calib else None,
        'hysteresis_nats': hysteresis, 'window_steps': window,
        'calibration_episodes': sum(ep.outcome == 'success' for ep in calib),
        'episodes': len(measured), 'takeovers': len(rows),
        'preceded': sum(r['preceded'] for r in rows),
        'preceded_rate': round(sum(r['preceded'] for r in rows) / len(rows), 3) if rows else None,
        'chance_rate': None if (c := chance(flagged, window)) is None else round(c, 3),
        'lead_median_steps': float(np.median(leads)) if leads else None,
        'lead_quartiles_steps': [float(q) for q in np.percentile(leads, [25, 75])] if leads else None,
        'flagged_policy_steps_rate': round(float(np.mean(np.concatenate(policy_steps))), 3)
        if policy_steps and sum(map(len, policy_steps)) else None,
        'per_takeover': rows,
    }


def table(r: dict[str, Any]) -> str:
    """The report as the README's small table."""
    def fmt(v):
        return '-' if v is None else (f'{v:.1%}' if isinstance(v, float) and v <= 1 else str(v))
    lines = [f'threshold {r["threshold_nats"]} nats (hysteresis {r["hysteresis_nats"]}), window {r["window_steps"]} '
             f'policy steps',
             '| episodes | takeovers | preceded by the flag | chance level | lead, median (IQR) steps | '
             'policy steps flagged |', '|---|---|---|---|---|---|',
             f'| {r["episodes"]} | {r["takeovers"]} | {r["preceded"]} ({fmt(r["preceded_rate"])}) | '
             f'{fmt(r["chance_rate"])} | {r["lead_median_steps"] if r["lead_median_steps"] is not None else "-"} '
             f'({"-" if not r["lead_quartiles_steps"] else "-".join(f"{q:g}" for q in r["lead_quartiles_steps"])})'
             f' | {fmt(r["flagged_policy_steps_rate"])} |']
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog='hapo uncertainty', formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description=__doc__.split('\n')[0], epilog=__doc__.split('\n', 2)[2])
    ap.add_argument('--bags', nargs='+', required=True, help='episode bags (or directories) with takeovers')
    ap.add_argument('--calibrate', nargs='+', default=[], metavar='BAGS',
                    help='bags whose successful episodes set the threshold')
    ap.add_argument('--threshold', type=float, default=None, help='nats; instead of --calibrate')
    ap.add_argument('--quantile', type=float, default=0.95, help='calibration quantile (default: %(default)s)')
    ap.add_argument('--hysteresis', type=float, default=0.25, help='nats (default: %(default)s, as policy_node)')
    ap.add_argument('--window', type=int, default=20, help='policy steps before a takeover (default: %(default)s)')
    ap.add_argument('--out', type=Path, default=None, help='write the report JSON here')
    args = ap.parse_args(argv)
    if (args.threshold is None) == (not args.calibrate):
        ap.error('give exactly one of --calibrate BAGS and --threshold NATS')
    try:
        calib, errors = load(args.calibrate)
        measured, more = load(args.bags)
        for line in errors + more:
            print(f'hapo uncertainty: skipped: {line}', file=sys.stderr)
        if not measured:
            raise ValueError(f'no readable episode bag in {" ".join(args.bags)}')
        r = report(calib, measured, quantile=args.quantile, threshold=args.threshold,
                   hysteresis=args.hysteresis, window=args.window)
    except (BagError, ValueError) as exc:
        print(f'hapo uncertainty: {exc}', file=sys.stderr)
        return 2
    print(table(r))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(r, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
