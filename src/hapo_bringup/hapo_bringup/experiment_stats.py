# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The experiment's numbers from stored outcomes: cells (an arm on a scenario over training seeds), the lifelong
curve, the winner by the protocol's rule, the README section (``hapo experiment report``) and the plot."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hapo_trainer.compare import compare

BEGIN, END = '<!-- experiment:begin -->', '<!-- experiment:end -->'


def cell(base: dict[str, Any] | None, evals: list[dict[str, Any] | None], trained: list[dict[str, Any] | None]
         ) -> dict[str, Any]:
    """One arm on one scenario: per training seed its success, 95 % interval and paired wins / losses against
    the base (exact McNemar), and the mean over the seeds with its spread (sample standard deviation)."""
    seeds = []
    for e, t in zip(evals, trained, strict=True):
        if e is None or base is None:
            continue
        c = compare(base, e)
        seeds.append({'success_rate': e['success_rate'], 'wilson95': e['wilson95'], 'wins': c['only_b'],
                      'losses': c['only_a'], 'mcnemar_p': c['mcnemar_p'], 'seeds': c['common_seeds'],
                      'diagnostics': (t or {}).get('diagnostics', {}).get('mean')})
    rates = [s['success_rate'] for s in seeds]
    return {'base': None if base is None else base['success_rate'], 'per_seed': seeds, 'n': len(seeds),
            'of': len(evals), 'mean': statistics.fmean(rates) if rates else None,
            'spread': statistics.stdev(rates) if len(rates) > 1 else 0.0 if rates else None}


def lifelong(chain: list[dict[str, Any]], outcome: Callable[[Any], dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Per round: the deployment's success and intervention ratio, then the trained policy's success."""
    rows = []
    for r, units in enumerate(chain, 1):
        d, e, o = outcome(units['round']), outcome(units['eval']), outcome(units['original'])
        rows.append({'round': r, 'deploy_success': d and d['success_rate'],
                     'intervention_ratio': d and d['intervention_ratio'],
                     'success': e and e['success_rate'], 'original_success': o and o['success_rate']})
    return rows


def winner(tables: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """The protocol's rule (``winner:`` of the config) applied to the tables."""
    rule = cfg.get('winner', {})
    alpha, order = float(rule.get('alpha', 0.05)), list(rule.get('simplicity', []))
    score, kept, why = {}, [], {}
    for arm in cfg['arms']:
        means = [t['arms'][arm]['adaptation']['mean'] for t in tables.values()]
        score[arm] = statistics.fmean(means) if means and None not in means else None
        worse = [f'{name} seed {i}' for name, t in tables.items()
                 for i, s in enumerate(t['arms'][arm]['retention']['per_seed'])
                 if s['mcnemar_p'] < alpha and s['losses'] > s['wins']]
        if worse:
            why[arm] = f'retention significantly below the base on {", ".join(worse)}'
        elif score[arm] is not None:
            kept.append(arm)
    if not kept:
        return {'arm': None, 'score': score, 'excluded': why}
    best = max(score[a] for a in kept)
    tied = [a for a in kept if score[a] >= best - 0.01]
    tied.sort(key=lambda a: order.index(a) if a in order else len(order))
    return {'arm': tied[0], 'score': score, 'excluded': why, 'tied': tied}


def _pct(x: float | None) -> str:
    return '–' if x is None else f'{100 * x:.0f}'


def _cell(c: dict[str, Any]) -> str:
    if c['mean'] is None:
        return '–'
    text = f'{100 * c["mean"]:.0f} ± {100 * c["spread"]:.0f}'
    wins, losses = sum(s['wins'] for s in c['per_seed']), sum(s['losses'] for s in c['per_seed'])
    return text + f' ({wins}/{losses})' + ('' if c['n'] == c['of'] else f' [{c["n"]}/{c["of"]}]')


def report(body: dict[str, Any]) -> str:
    """The README's results section (markdown) from a results.json body."""
    cfg = body['config']
    arms = list(cfg['arms'])
    lines = [f'Evaluation seeds {body["evaluation_seeds"]} (the same for every checkpoint); training seeds '
             f'{cfg["training_seeds"]}; success in % as mean ± spread (sample sd) over training seeds, with the '
             'paired wins/losses against the base summed over seeds'
             + ('' if body['complete'] else f'; **incomplete: {len(body["missing"])} units still to run**, '
                '[n/m] marks cells with n of m seeds done') + '.', '',
             '| task / disruption | base | ' + ' | '.join(arms) + ' |', '|' + '---|' * (len(arms) + 2)]
    for name, t in body['tables'].items():
        first = t['arms'][arms[0]]['adaptation']
        lines.append(f'| {name} | {_pct(first["base"])} | ' + ' | '.join(_cell(t['arms'][a]['adaptation'])
                                                                       for a in arms) + ' |')
    lines += ['', 'Retention on the original scenario (after training on the disruption):', '',
              '| task / trained on | base | ' + ' | '.join(arms) + ' |', '|' + '---|' * (len(arms) + 2)]
    for t in body['tables'].values():
        first = t['arms'][arms[0]]['retention']
        lines.append(f'| {t["original"]} / {t["disruption"]} | {_pct(first["base"])} | '
                     + ' | '.join(_cell(t['arms'][a]['retention']) for a in arms) + ' |')
    if body['lifelong']:
        life = cfg['lifelong']
        lines += ['', f'Lifelong on {life["scenario"]}: success after each round / intervention ratio of its '
                  'deployment (%):', '', '| arm / seed | ' + ' | '.join(f'round {r}' for r in
                                                                        range(1, life['rounds'] + 1)) + ' |',
                  '|' + '---|' * (life['rounds'] + 1)]
        for name, rows in body['lifelong'].items():
            lines.append(f'| {name} | ' + ' | '.join(f'{_pct(r["success"])} / {_pct(r["intervention_ratio"])}'
                                                    for r in rows) + ' |')
    w = body.get('winner')
    lines += ['', f'Winner by the protocol\'s rule: **{w["arm"]}**' if w else
              'Winner: not decided until every unit has run.']
    cpu = body.get('cpu_s', {})
    per_stage = ', '.join(f'{k} {v / 3600:.1f} h' for k, v in cpu.items())
    lines.append(f'CPU time so far: {sum(cpu.values()) / 3600:.1f} h ({per_stage}).')
    return '\n'.join(lines)


def plot(body: dict[str, Any], path: Path) -> None:
    """Adaptation per arm and disruption (mean, spread as error bars, base as a line)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    tables, arms = body['tables'], list(body['config']['arms'])
    fig, ax = plt.subplots(figsize=(max(5.0, 1.0 + 0.5 * len(arms) * len(tables)), 3.8))
    width = 0.8 / max(1, len(arms))
    for j, arm in enumerate(arms):
        xs = [i + (j - (len(arms) - 1) / 2) * width for i in range(len(tables))]
        cells = [t['arms'][arm]['adaptation'] for t in tables.values()]
        ax.bar(xs, [c['mean'] or 0 for c in cells], width, yerr=[c['spread'] or 0 for c in cells], label=arm,
               capsize=2)
    for i, t in enumerate(tables.values()):
        base = t['arms'][arms[0]]['adaptation']['base']
        if base is not None:
            ax.hlines(base, i - 0.45, i + 0.45, colors='k', linestyles='--', lw=1)
    ax.set_xticks(range(len(tables)), list(tables))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel('success (dashed: base)')
    ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog='hapo experiment report', description='The README results section from '
                                 'OUT/results.json (printed; --readme: written between its markers).')
    ap.add_argument('--out', type=Path, default=Path('runs/exp'), help='the experiment directory (default: '
                    '%(default)s)')
    ap.add_argument('--readme', type=Path, default=None, help=f'a file holding {BEGIN} ... {END}')
    args = ap.parse_args(argv)
    path = args.out / 'results.json'
    try:
        text = report(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError) as exc:
        print(f'hapo experiment report: {path}: {exc}', file=sys.stderr)
        return 2
    if args.readme is None:
        print(text)
        return 0
    readme = args.readme.read_text()
    if BEGIN not in readme or END not in readme:
        print(f'hapo experiment report: {args.readme}: no {BEGIN} ... {END} markers', file=sys.stderr)
        return 2
    head, rest = readme.split(BEGIN, 1)
    args.readme.write_text(f'{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}')
    print(f'hapo experiment report: {args.readme} updated from {path}', file=sys.stderr)
    return 0
