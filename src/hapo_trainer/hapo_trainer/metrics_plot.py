# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The PNG summary of a training run (``<out>/metrics.png``) from its ``metrics.jsonl``: the loss, KL, reward
margin, and per class c (policy, correction, undesirable) the implied reward r (log pi - log pi_ref, summed over
the action tokens) and the weight lambda: the curves TensorBoard shows under ``r/<class>`` and ``lambda/<class>``."""

from __future__ import annotations

import json
import math
from pathlib import Path

from hapo_interfaces.enums import TRAINING_LABELS

PANELS = (('loss', ('loss', 'bc/nll')), ('KL estimate z0 (the reference point)', ('kl',)),
          ('reward margin (chosen - rejected)', ('rewards/margins', 'pairs/margin')),
          ('reward r = log pi - log pi_ref per class', tuple(f'r/{c.display}' for c in sorted(TRAINING_LABELS))),
          ('weight lambda per class', tuple(f'lambda/{c.display}' for c in sorted(TRAINING_LABELS))),
          ('learning rate', ('lr',)))


def read_metrics(path: Path) -> list[dict]:
    """The JSON lines of ``path`` (a line cut by a crash is left out)."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_metrics(jsonl: Path, out: Path, title: str = '') -> Path | None:
    """Write ``out`` from ``jsonl``; None (nothing written) when it holds no logged step."""
    rows = [r for r in read_metrics(jsonl) if isinstance(r.get('step'), int)] if jsonl.exists() else []
    if not rows:
        return None
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    panels = [(name, [k for k in keys if any(r.get(k) is not None for r in rows)]) for name, keys in PANELS]
    panels = [(name, keys) for name, keys in panels if keys]
    cols = 3
    fig, axes = plt.subplots(math.ceil(len(panels) / cols), cols, figsize=(12, 3.2 * math.ceil(len(panels) / cols)),
                             squeeze=False)
    for ax, (name, keys) in zip(axes.flat, panels, strict=False):
        for k in keys:
            pts = [(r['step'], r[k]) for r in rows if r.get(k) is not None]
            ax.plot([s for s, _ in pts], [v for _, v in pts], marker='.' if len(pts) < 30 else None, label=k)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel('optimiser step', fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis('off')
    fig.suptitle(title or str(jsonl.parent), fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
