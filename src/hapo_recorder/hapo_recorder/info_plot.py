# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``hapo bag-info --plot``: one PNG for a run of episodes: who drove each step, the K window, the outcome, and
the label counts (matplotlib, headless).

Each episode is a row of cells, one per executed step in order: the policy, the human, a hold, the e-stop; the K
policy steps before each intervention (label c = 0, undesirable) are drawn in their own colour, so the window the
trainer penalises is visible next to the takeover it precedes. The outcome is written at the row's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hapo_interfaces.enums import ControlSource, Label
from hapo_recorder.bag_reader import Episode

MAX_ROWS = 60  # beyond this the timeline shows the first MAX_ROWS episodes and says so
# cell code -> (colour, legend); 0 pads episodes shorter than the longest
CELLS = {0: ('#ffffff', None), 1: ('#1f77b4', 'policy'), 2: ('#ff7f0e', 'human (c = 2)'),
         3: ('#9e9e9e', 'hold'), 4: ('#000000', 'e-stop'), 5: ('#d62728', 'policy, K window (c = 0)')}
OUTCOME_MARK = {'success': 'success', 'failure': 'FAILURE', 'aborted': 'aborted'}


def timeline_codes(ep: Episode) -> np.ndarray:
    """(N,) cell codes of ``CELLS`` for one episode's executed steps."""
    src = ep.sources.astype(np.int64)
    codes = np.select([src == ControlSource.POLICY, src == ControlSource.HUMAN, src == ControlSource.NONE,
                       src == ControlSource.STOPPED], [1, 2, 3, 4], default=3)
    codes[(src == ControlSource.POLICY) & (ep.labels == Label.UNDESIRABLE)] = 5
    return codes


def plot_run(episodes: Sequence[Episode], out: Path, title: str = '') -> Path:
    """Write the PNG to ``out``: the timeline of the first ``MAX_ROWS`` episodes over the label counts of all."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from hapo_recorder.relabel import label_counts

    shown = list(episodes[:MAX_ROWS])
    width = max((len(ep.sources) for ep in shown), default=1)
    grid = np.zeros((max(len(shown), 1), max(width, 1)), np.int64)
    for row, ep in enumerate(shown):
        codes = timeline_codes(ep)
        grid[row, :len(codes)] = codes
    fig_h = 2.6 + 0.22 * len(shown)
    fig, (ax, bars) = plt.subplots(2, 1, figsize=(11, fig_h), height_ratios=[max(len(shown), 4), 3])
    ax.imshow(grid, aspect='auto', interpolation='nearest', cmap=ListedColormap([c for c, _ in CELLS.values()]),
              vmin=0, vmax=len(CELLS) - 1)
    ax.set_yticks(range(len(shown)), [f'{ep.path.name[-28:]}' for ep in shown], fontsize=6)
    for row, ep in enumerate(shown):
        ax.text(width + 0.5, row, f' {OUTCOME_MARK.get(ep.outcome, ep.outcome)} ({ep.interventions} int.)',
                va='center', fontsize=6, color='#d62728' if ep.outcome == 'failure' else '#333333')
    ax.set_xlim(-0.5, width * 1.16)
    ax.set_xlabel('executed step')
    more = f' (first {MAX_ROWS} of {len(episodes)} episodes)' if len(episodes) > MAX_ROWS else ''
    ks = sorted({ep.k for ep in episodes})
    ax.set_title(f'{title}who drove each step{more}; K = {", ".join(map(str, ks))}', fontsize=9)
    ax.legend(handles=[Patch(color=c, label=name) for c, name in CELLS.values() if name], fontsize=7, ncol=5,
              loc='upper center', bbox_to_anchor=(0.5, -0.12 if len(shown) > 8 else -0.3), frameon=False)

    totals: dict[str, int] = {}
    for ep in episodes:
        for name, n in label_counts(ep.labels).items():
            totals[name] = totals.get(name, 0) + n
    names = ['policy', 'correction', 'undesirable', 'not_training']
    colours = [CELLS[1][0], CELLS[2][0], CELLS[5][0], CELLS[3][0]]
    counts = [totals.get(n, 0) for n in names]
    drawn = bars.barh(['c = 1 policy', 'c = 2 correction', 'c = 0 undesirable', 'hold (not trained)'], counts,
                      color=colours)
    bars.bar_label(drawn, [str(n) for n in counts], fontsize=7, padding=2)
    bars.invert_yaxis()
    outcomes = {o: sum(ep.outcome == o for ep in episodes) for o in sorted({ep.outcome for ep in episodes})}
    human = sum(int((ep.sources == ControlSource.HUMAN).sum()) for ep in episodes)
    driven = sum(int(np.isin(ep.sources, (ControlSource.POLICY, ControlSource.HUMAN)).sum()) for ep in episodes)
    ratio = f'{human / driven:.1%}' if driven else 'n/a'
    bars.set_title(f'steps per label over {len(episodes)} episodes; outcomes {outcomes}; intervention ratio '
                   f'{ratio} (human / driven steps)', fontsize=9)
    bars.tick_params(labelsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
