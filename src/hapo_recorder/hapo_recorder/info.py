# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""One line per episode bag: task, instruction, outcome, steps, interventions, labels, drops (no ROS).

    python -m hapo_recorder.info runs/episodes            # every episode bag in the directory
    python -m hapo_recorder.info runs/episodes/2025*_ep0003_lift --json
    ros2 run hapo_recorder info DIR...                     # also `hapo bag-info DIR...` (calls main(argv))
    hapo bag-info runs/episodes --plot                     # and runs/episodes/bag_info.png (info_plot.py)

A bag cut by a crash is listed as truncated (read up to its last complete chunk); an unreadable one as a
one-line error. Exits 1 only when nothing could be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hapo_interfaces.enums import ControlSource
from hapo_recorder.bag_reader import BagError, Episode, list_episodes, read_episode
from hapo_recorder.relabel import label_counts


def summary(ep: Episode) -> dict:
    """The numbers of one line, as a dict (also the --json output)."""
    steps = len(ep.sources)
    human = int((ep.sources == ControlSource.HUMAN).sum())
    driven = int(np.isin(ep.sources, (ControlSource.POLICY, ControlSource.HUMAN)).sum())
    counts = ep.metadata.get('topic_counts') or {}
    dropped = sum(int(c.get('dropped', 0)) for c in counts.values()) if isinstance(counts, dict) else 0
    return {'path': str(ep.path), 'task': ep.task, 'instruction': ep.instruction, 'outcome': ep.outcome,
            'truncated': ep.truncated, 'demo': ep.demo, 'k': ep.k, 'steps': steps, 'driven_steps': driven,
            'hold_steps': steps - driven, 'interventions': ep.interventions,
            'intervention_ratio': round(human / driven, 3) if driven else 0.0, 'labels': label_counts(ep.labels),
            'dropped': dropped, 'skipped': sum(ep.skipped.values()),
            'continuation_of': str(ep.metadata.get('continuation_of') or '')}


def format_line(s: dict) -> str:
    lab = s['labels']
    return (f'{s["path"]}: task={s["task"]!r} instruction={s["instruction"]!r} outcome={s["outcome"]}'
            f'{" (truncated: read up to the last complete chunk)" if s["truncated"] else ""}'
            f'{" continues " + s["continuation_of"] if s.get("continuation_of") else ""}'
            f'{" demo" if s["demo"] else ""} steps={s["steps"]} (driven={s["driven_steps"]} holds={s["hold_steps"]}) '
            f'interventions={s["interventions"]} '
            f'intervention_ratio={s["intervention_ratio"]:.3f} labels c1={lab["policy"]} c2={lab["correction"]} '
            f'c0={lab["undesirable"]} none={lab["not_training"]} (k={s["k"]}) dropped={s["dropped"]}')


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='hapo_recorder.info', description=__doc__.split('\n')[0])
    parser.add_argument('paths', nargs='+', help='episode bag directories or directories holding them')
    parser.add_argument('--json', action='store_true', help='one JSON object per line instead of text')
    parser.add_argument('--plot', nargs='?', const='', default=None, metavar='PNG',
                        help='also write a PNG: who drove each step of each episode, the K window, the outcome, '
                             'and the label counts (default: DIR/bag_info.png for one DIR, else ./bag_info.png)')
    args = parser.parse_args(argv)
    ok = failed = 0
    read: list[Episode] = []
    for target in args.paths:
        try:
            bags = list_episodes([target])
        except BagError as exc:
            print(f'error: {exc}', file=sys.stderr)
            failed += 1
            continue
        for path in bags:
            try:
                ep = read_episode(path, decode_images=False)
                s = summary(ep)
            except BagError as exc:
                print(f'error: {exc}', file=sys.stderr)
                failed += 1
                continue
            ok += 1
            print(json.dumps(s) if args.json else format_line(s))
            if args.plot is not None:
                read.append(ep)
    if not ok:
        print(f'error: no episode bag could be read in {" ".join(args.paths)}', file=sys.stderr)
        return 1
    if args.plot is not None:
        from hapo_recorder.info_plot import plot_run

        one_dir = len(args.paths) == 1 and Path(args.paths[0]).is_dir() and not _is_one_bag(Path(args.paths[0]))
        out = Path(args.plot) if args.plot else (Path(args.paths[0]) if one_dir else Path.cwd()) / 'bag_info.png'
        try:
            print(f'plot: {plot_run(read, out, title=f"{len(read)} episodes: ")}', file=sys.stderr)
        except OSError as exc:
            print(f'error: {out}: cannot write the plot ({exc.strerror or exc})', file=sys.stderr)
            return 1
    return 0


def _is_one_bag(path: Path) -> bool:
    return list_episodes([path]) == [path]


if __name__ == '__main__':
    sys.exit(main())
