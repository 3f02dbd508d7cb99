# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""One deployment round on the simulated robot: deploy with the operator, ``optimize``, evaluate before and after.

    hapo round --policy CKPT --scenario lift_far --episodes 40 --method kto --out DIR
               [--seeds A:B] [--eval-seeds 100000:100040] [--eval-scenarios lift_far,lift] [--steps N]
               [--train-seed N] [--workers 2] [--config optimize.yaml] [key:=value ...]

Stages, each skipped when DIR already holds its result (so a rerun, or a rerun after Ctrl-C, continues):

1. **deploy**: M episodes on round seeds (default: the first M of ``hapo_sim.seeds`` 'rounds', disjoint from the
   evaluation seeds) with the policy driving and the simulated operator taking over when it is about to fail,
   recorded as a person's interventions (``evaluate-sim --operator`` with the recorder): ``DIR/bags``,
   ``DIR/deploy.json`` (success, intervention ratio, takeover reasons).
2. **optimize**: ``hapo optimize --bags DIR/bags --policy CKPT --method NAME --out DIR/train``; the new policy is
   ``DIR/policy``.
3. **evaluate**: closed-loop success of CKPT and of the new policy on the same evaluation seeds of each scenario
   (the round's first), no operator: ``DIR/eval/<policy_id>_<scenario>_<a>_<b>.json`` (``--eval-cache`` shares
   them between rounds: a policy is evaluated once per scenario and seeds).
4. ``DIR/round.json`` (every number, the paired comparison per scenario) and ``DIR/round.png``.

``key:=value`` go to the graphs of stages 1 and 3 (``horizon:=100``; the operator's and the recorder's, e.g.
``stall_steps:=30`` or ``k:=5``, to stage 1 only); ``--steps``, ``--lr``, ``--K``, ``--train-seed`` and ``--config`` to
optimize. The training seed moves the result a lot (README, "The demo: measured"): compare methods over several.

    hapo loop --rounds R --policy CKPT --scenario lift_far --episodes 40 --method kto --out DIR [as round]

chains rounds: round r (``DIR/round-<r>``) deploys round r-1's policy on the next M round seeds; the evaluations
are shared (``DIR/eval``), and ``DIR/loop.json`` + ``DIR/loop.png`` hold success and intervention ratio per round.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hapo_bringup.evaluate_sim import EvaluationError, evaluate_sim
from hapo_interfaces.params import ParamError
from hapo_sim import seeds as seed_uses
from hapo_trainer.compare import compare

EVALUATED = ('sim_node', 'policy_node', 'mux_node')  # the nodes of an evaluation graph


class RoundError(RuntimeError):
    """A stage of the round failed; the text says which and why."""


def _write_json(path: Path, body: dict[str, Any]) -> None:
    from hapo_policy.checkpoint import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(body, indent=2) + '\n')


def _bar(desc: str, total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit='episode')


def deploy(policy: Path, scenario: str, seeds: range, out: Path, overrides: Sequence[str], workers: int
           ) -> dict[str, Any]:
    """Stage 1 (``DIR/deploy.json``, ``DIR/bags``); reuses a finished one with the same policy and seeds."""
    done = out / 'deploy.json'
    if done.exists():
        body = json.loads(done.read_text())
        if body.get('seeds') == [seeds.start, seeds.stop] and body.get('policy') == str(policy):
            print(f'hapo round: deploy: reusing {done}', file=sys.stderr)
            return body
    bags = out / 'bags'
    if bags.exists():
        shutil.rmtree(bags)  # an unfinished deployment: its episodes are redone whole
    with _bar('round: deploy', len(seeds)) as bar:
        result = evaluate_sim(policy, seeds, [f'scenario:={scenario}', 'input_device:=operator_node', *overrides],
                              workers=workers, progress=bar.update, operator=True, record=bags)
    if result.get('interrupted'):
        raise KeyboardInterrupt
    _write_json(done, result)
    return result


def optimize(policy: Path, out: Path, method: str, args: Sequence[str]) -> Path:
    """Stage 2: the new policy, ``DIR/policy``."""
    final, record = out / 'policy', out / 'optimize.json'
    train = out / 'train'
    argv = ['--bags', str(out / 'bags'), '--policy', str(policy), '--out', str(train), '--method', method, *args]
    if record.exists() and json.loads(record.read_text()) != argv:
        raise RoundError(f'{out} was optimized with other arguments ({record}); choose another --out')
    if (final / 'config.json').exists():
        print(f'hapo round: optimize: reusing {final}', file=sys.stderr)
        return final
    from hapo_policy.checkpoint import atomic_dir
    from hapo_trainer.optimize import main as optimize_main
    from hapo_trainer.train_state import latest_checkpoint

    _write_json(record, argv)
    if latest_checkpoint(train) is not None:
        argv.append('--resume')
    code = optimize_main(argv)
    if code == 130:
        raise KeyboardInterrupt
    if code != 0:
        raise RoundError(f'optimize failed (exit {code}); see its message above')
    with atomic_dir(final) as tmp:
        for f in (train / 'policy').iterdir():
            shutil.copy2(f, tmp / f.name)
    return final


def shipped_result(dirs: Sequence[Path], pid: str, scenario: str, seeds: range) -> dict[str, Any] | None:
    """A result file in ``dirs`` (e.g. the one shipped beside a base policy) of exactly this policy, scenario and
    seeds, evaluated without overrides; None if there is none."""
    for d in dirs:
        for path in sorted(Path(d).glob('*.json')):
            with contextlib.suppress(OSError, ValueError):
                r = json.loads(path.read_text())
                if (r.get('policy_id') == pid and Path(str(r.get('scenario'))).stem == Path(scenario).stem
                        and r.get('seeds') == [seeds.start, seeds.stop] and not r.get('interrupted')):
                    return r
    return None


def evaluate(policy: Path, scenario: str, seeds: range, cache: Path, workers: int, overrides: Sequence[str] = (),
             shipped: Sequence[Path] = ()) -> dict[str, Any]:
    """Stage 3 for one policy and scenario, cached by the policy's weights, scenario, seeds and overrides (also
    found in ``shipped`` directories when there are no overrides)."""
    from hapo_policy.checkpoint import policy_id, weights_files

    pid = policy_id(weights_files(policy))
    tag = f'_{hashlib.sha256(chr(10).join(overrides).encode()).hexdigest()[:8]}' if overrides else ''
    path = cache / f'{pid}_{Path(scenario).stem}_{seeds.start}_{seeds.stop}{tag}.json'
    if path.exists():
        return json.loads(path.read_text())
    found = None if overrides else shipped_result(shipped, pid, scenario, seeds)
    if found is not None:
        print(f'hapo round: {Path(scenario).stem} seeds {seeds.start}:{seeds.stop} of {pid}: the shipped result',
              file=sys.stderr)
        return found
    with _bar(f'round: evaluate {Path(policy).name} on {Path(scenario).stem}', len(seeds)) as bar:
        result = evaluate_sim(policy, seeds, [f'scenario:={scenario}', *overrides], workers=workers,
                              progress=bar.update)
    if result.get('interrupted'):
        raise KeyboardInterrupt
    _write_json(path, result)
    return result


def summary(policy: Path, new: Path, scenario: str, method: str, deployed: dict[str, Any],
            evaluations: dict[str, tuple[dict, dict]], timing: dict[str, float]) -> dict[str, Any]:
    """The body of ``round.json``."""
    episodes = deployed['episodes']
    return {
        'policy': str(policy), 'policy_id': deployed['policy_id'], 'new_policy': str(new),
        'scenario': scenario, 'method': method,
        'deploy': {'seeds': deployed['seeds'], 'episodes': len(episodes), 'success_rate': deployed['success_rate'],
                   'intervention_ratio': deployed['intervention_ratio'],
                   'takeovers': sum(e['takeovers'] for e in episodes),
                   'takeover_reasons': deployed['takeover_reasons'],
                   'intervention_ratio_by_reason': deployed.get('intervention_ratio_by_reason', {}),
                   'human_steps': sum(e['human_steps'] for e in episodes),
                   'steps': sum(e['steps'] for e in episodes)},
        'evaluations': {name: {'seeds': before['seeds'], 'before': _rate(before), 'after': _rate(after),
                               'paired': {k: v for k, v in compare(before, after).items() if k not in ('a', 'b')}}
                        for name, (before, after) in evaluations.items()},
        'new_policy_id': next(iter(evaluations.values()))[1]['policy_id'],
        'timing_s': {k: round(v, 1) for k, v in timing.items()},
    }


def _rate(result: dict[str, Any]) -> dict[str, Any]:
    return {'success_rate': result['success_rate'], 'wilson95': result['wilson95'],
            'episodes': len(result['episodes'])}


def plot(body: dict[str, Any], path: Path) -> None:
    """``round.png``: success before/after per scenario (95 % Wilson intervals) and the round's intervention ratio."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = list(body['evaluations'])
    fig, ax = plt.subplots(figsize=(max(4.5, 1.8 + 1.6 * len(names)), 3.8))
    for i, name in enumerate(names):
        for j, (when, colour) in enumerate((('before', '#9aa5b1'), ('after', '#2f7ed8'))):
            r = body['evaluations'][name][when]
            lo, hi = r['wilson95']
            x = i + (j - 0.5) * 0.38
            ax.bar(x, r['success_rate'], 0.36, color=colour, label=when if i == 0 else None)
            ax.errorbar(x, r['success_rate'], [[r['success_rate'] - lo], [hi - r['success_rate']]], color='k',
                        capsize=3, lw=1)
    ax.set_xticks(range(len(names)), [f'{n}\n({body["evaluations"][n]["before"]["episodes"]} seeds)' for n in names])
    ax.set_ylim(0, 1.15)
    ax.set_ylabel('success')
    for i, name in enumerate(names):
        p = body['evaluations'][name]['paired']
        ax.text(i, 1.0, f'{p["only_b"]} wins / {p["only_a"]} losses\np = {p["mcnemar_p"]:.2g}', ha='center',
                va='bottom', fontsize=7)
    d = body['deploy']
    ax.set_title(f'{body["method"]} after one round on {body["scenario"]}\n{d["episodes"]} episodes, '
                 f'intervention ratio {d["intervention_ratio"]:.0%}', fontsize=9)
    ax.legend(loc='lower right', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def for_evaluation(overrides: Sequence[str]) -> list[str]:
    """The overrides that also apply to the evaluation graphs (sim, policy, mux): not the operator's or the
    recorder's."""
    import dataclasses

    from hapo_bringup.graph import DEPLOY_GRAPH

    nodes = {n.name: {f.name for f in dataclasses.fields(n.schema_class())} for n in DEPLOY_GRAPH
             if n.name in EVALUATED}
    keep = []
    for o in overrides:
        key = o.split(':=', 1)[0]
        node, _, name = key.rpartition('.')
        if (name in nodes[node]) if node in nodes else (not node and any(name in f for f in nodes.values())):
            keep.append(o)
    return keep


def run_round(policy: Path, scenario: str, seeds: range, out: Path, method: str, eval_seeds: range,
              eval_scenarios: Sequence[str], overrides: Sequence[str] = (), optimize_args: Sequence[str] = (),
              workers: int = 2, eval_cache: Path | None = None, shipped: Sequence[Path] = ()) -> dict[str, Any]:
    """All four stages; the ``round.json`` body."""
    timing: dict[str, float] = {}
    t0 = time.monotonic()
    deployed = deploy(policy, scenario, seeds, out, overrides, workers)
    timing['deploy'] = time.monotonic() - t0
    t0 = time.monotonic()
    new = optimize(policy, out, method, optimize_args)
    timing['optimize'] = time.monotonic() - t0
    t0 = time.monotonic()
    cache = eval_cache or out / 'eval'
    plain = for_evaluation(overrides)
    evaluations = {Path(s).stem: (evaluate(policy, s, eval_seeds, cache, workers, plain, shipped),
                                  evaluate(new, s, eval_seeds, cache, workers, plain)) for s in eval_scenarios}
    timing['evaluate'] = time.monotonic() - t0
    body = summary(policy, new, scenario, method, deployed, evaluations, timing)
    _write_json(out / 'round.json', body)
    plot(body, out / 'round.png')
    return body


def table(body: dict[str, Any]) -> str:
    """The terminal table of a round."""
    d = body['deploy']
    lines = [f'round: {body["method"]} on {body["scenario"]}: {d["episodes"]} episodes (seeds {d["seeds"][0]}:'
             f'{d["seeds"][1]}), {d["takeovers"]} takeovers {d["takeover_reasons"]}, intervention ratio '
             f'{d["intervention_ratio"]:.1%}',
             f'{"scenario":<22}{"seeds":>14}{"before":>9}{"after":>9}{"wins":>6}{"losses":>8}{"McNemar p":>11}']
    for name, e in body['evaluations'].items():
        p = e['paired']
        lines.append(f'{name:<22}{e["seeds"][0]:>7}:{e["seeds"][1]:<6}{e["before"]["success_rate"]:>9.0%}'
                     f'{e["after"]["success_rate"]:>9.0%}{p["only_b"]:>6}{p["only_a"]:>8}{p["mcnemar_p"]:>11.3g}')
    return '\n'.join(lines)


def parser(prog: str = 'hapo round') -> argparse.ArgumentParser:
    """The options of ``hapo round`` (``hapo loop`` adds ``--rounds``)."""
    doc = __doc__ or ''
    p = argparse.ArgumentParser(prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description=doc.split('\n\n')[0], epilog=doc.split('\n\n', 1)[1])
    p.add_argument('overrides', nargs='*', metavar='key:=value', help='deploy-graph parameters of the deployment')
    p.add_argument('--policy', type=Path, required=True, help='the deployed checkpoint (and the frozen reference)')
    p.add_argument('--scenario', required=True, metavar='FILE|NAME', help='scenario deployed on (config/scenarios)')
    p.add_argument('--episodes', type=int, default=40, help='deployment episodes (default: %(default)s)')
    p.add_argument('--seeds', type=seed_uses.arg, default=None, metavar='A:B',
                   help='deployment seeds (default: the first EPISODES round seeds)')
    p.add_argument('--method', default='kto', help='optimize method (default: %(default)s)')
    p.add_argument('--out', type=Path, required=True, help='round directory (created; a rerun continues it)')
    p.add_argument('--eval-seeds', type=seed_uses.arg, default=seed_uses.first('evaluation', 50), metavar='A:B',
                   help='evaluation seeds, before and after (default: the first 50 evaluation seeds; selection '
                        'seeds to tune on)')
    p.add_argument('--eval-scenarios', default=None, metavar='S,S',
                   help="scenarios evaluated (default: the round's, then lift)")
    p.add_argument('--eval-cache', type=Path, default=None, help='evaluation results shared between rounds '
                   '(default: OUT/eval)')
    p.add_argument('--steps', type=int, default=None, help='optimiser steps (optimize --steps)')
    p.add_argument('--lr', type=float, default=None, help='learning rate (optimize --lr)')
    p.add_argument('--train-seed', type=int, default=None, metavar='N', help="training seed: the sampler's order (and "
                   "image shifts for BC) (optimize --seed; default: the config's run.seed, 0)")
    p.add_argument('--K', type=int, default=None, help='relabel window: policy steps before a takeover counted '
                   'undesirable (optimize --K; default: the config, 10)')
    p.add_argument('--config', default=None, help='trainer YAML (optimize --config)')
    p.add_argument('--workers', type=int, default=2, help='graphs in parallel (default: %(default)s)')
    return p


def checked(args: argparse.Namespace, seeds: range, prog: str) -> tuple[list[str], list[str]] | None:
    """(evaluation scenarios, optimize arguments) of parsed options; None after printing why they are refused."""
    for rng, use, flag in ((seeds, 'rounds', '--seeds'), (args.eval_seeds, 'evaluation', '--eval-seeds')):
        warning = seed_uses.check(rng, use)
        if warning and use == 'evaluation' and not seed_uses.check(rng, 'selection'):
            print(f'{prog}: --eval-seeds are selection seeds: for tuning; report figures on evaluation seeds only',
                  file=sys.stderr)
        elif warning:
            print(f'{prog}: {flag}: {warning}', file=sys.stderr)
            return None
    if not (args.policy / 'config.json').exists():
        print(f'{prog}: --policy {args.policy}: no checkpoint there (no config.json)', file=sys.stderr)
        return None
    scenarios = args.eval_scenarios.split(',') if args.eval_scenarios else list(dict.fromkeys([args.scenario,
                                                                                               'lift']))
    opt = [*(['--steps', str(args.steps)] if args.steps else []), *(['--lr', str(args.lr)] if args.lr else []),
           *(['--K', str(args.K)] if args.K is not None else []),
           *(['--seed', str(args.train_seed)] if args.train_seed is not None else []),
           *(['--config', args.config] if args.config else [])]
    return scenarios, opt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    seeds = args.seeds or seed_uses.first('rounds', args.episodes)
    ok = checked(args, seeds, 'hapo round')
    if ok is None:
        return 2
    try:
        body = run_round(args.policy, args.scenario, seeds, args.out, args.method, args.eval_seeds, ok[0],
                         args.overrides, ok[1], args.workers, args.eval_cache)
    except (ParamError, EvaluationError, RoundError) as exc:
        print(f'hapo round: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'hapo round: interrupted; rerun the same command to continue {args.out}', file=sys.stderr)
        return 130
    print(table(body))
    print(f'hapo round: {args.out / "round.json"}, {args.out / "round.png"}; new policy {body["new_policy"]}',
          file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
