# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``hapo loop``: deployment rounds chained, each deploying the previous round's policy (the lifelong loop).

    hapo loop --rounds 3 --policy CKPT --scenario lift_far --episodes 40 --method kto --out DIR [as hapo round]

Round r (1-based) runs in ``DIR/round-<r>`` on the r-th block of EPISODES round seeds, with ``--policy`` for r = 1
and round r-1's new policy after that; the evaluations are cached in ``DIR/eval``, so each policy is evaluated
once. ``DIR/loop.json``: per round, the deployment's success and intervention ratio and each scenario's
success before and after; ``DIR/loop.png`` plots them. A rerun continues where it stopped.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hapo_bringup.deploy_round import RoundError, _write_json, checked, parser, run_round, table
from hapo_bringup.evaluate_sim import EvaluationError
from hapo_interfaces.params import ParamError
from hapo_sim import seeds as seed_uses


def plot(body: dict[str, Any], path: Path) -> None:
    """Success per scenario after each round (round 0: the first policy) and the intervention ratio per round."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rounds = body['rounds']
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    xs = list(range(len(rounds) + 1))
    for name in rounds[0]['evaluations']:
        ys = [rounds[0]['evaluations'][name]['before']['success_rate']]
        ys += [r['evaluations'][name]['after']['success_rate'] for r in rounds]
        ax.plot(xs, ys, marker='o', label=f'success on {name}')
    ax.plot(xs[1:], [r['deploy']['intervention_ratio'] for r in rounds], marker='s', ls='--', color='k',
            label='intervention ratio (deployment)')
    ax.set_xticks(xs)
    ax.set_xlabel('round')
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title(f'{body["method"]} on {body["scenario"]}, {body["episodes"]} episodes per round', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = parser('hapo loop')
    p.description = (__doc__ or '').split('\n\n')[0]
    p.add_argument('--rounds', type=int, default=3, help='rounds (default: %(default)s)')
    args = p.parse_args(argv)
    first = args.seeds or seed_uses.first('rounds', args.episodes)
    n = len(first)
    blocks = [range(first.start + r * n, first.stop + r * n) for r in range(args.rounds)]
    ok = checked(args, range(blocks[0].start, blocks[-1].stop), 'hapo loop')
    if ok is None:
        return 2
    policy, rounds = args.policy, []
    try:
        for r, seeds in enumerate(blocks, 1):
            print(f'hapo loop: round {r}/{args.rounds}: {policy} on seeds {seeds.start}:{seeds.stop}', file=sys.stderr)
            body = run_round(policy, args.scenario, seeds, args.out / f'round-{r}', args.method, args.eval_seeds,
                             ok[0], args.overrides, ok[1], args.workers, args.eval_cache or args.out / 'eval')
            print(table(body))
            rounds.append(body)
            policy = Path(body['new_policy'])
    except (ParamError, EvaluationError, RoundError) as exc:
        print(f'hapo loop: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'hapo loop: interrupted; rerun the same command to continue {args.out}', file=sys.stderr)
        return 130
    body = {'scenario': args.scenario, 'method': args.method, 'episodes': n, 'rounds': rounds}
    _write_json(args.out / 'loop.json', body)
    plot(body, args.out / 'loop.png')
    print(json.dumps([{'round': i + 1, 'intervention_ratio': r['deploy']['intervention_ratio'],
                       **{k: e['after']['success_rate'] for k, e in r['evaluations'].items()}}
                      for i, r in enumerate(rounds)]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
