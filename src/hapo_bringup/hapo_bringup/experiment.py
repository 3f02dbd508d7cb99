# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``hapo experiment``: the protocol of ``config/experiment.yaml`` (issue 11), every unit cached and resumable.

    hapo experiment [--config config/experiment.yaml] [--out runs/exp] [--work DIR] [--workers 1] [--graphs 2]
                    [--quick] [--only STAGE,...] [--dry-run]
    hapo experiment report [--out runs/exp] [--readme README.md]

The protocol's units (``experiment_plan``: demos, bases, one deployment round per disruption, every arm x
training seed, every checkpoint x scenario on the evaluation seeds, the lifelong chains) run in order, each once:

* ``OUT/units/<stage>/<key>.json`` is a unit's outcome (small: commit it), written atomically when it finishes,
  with its CPU-seconds and wall time. Its key hashes the unit's inputs (``experiment_plan.Unit``), so a rerun, a
  new work tree with the committed outcomes, or a changed protocol line runs only what is missing.
* ``WORK/<stage>/<key>/`` (default ``OUT/work``, keep it out of git) holds its artifacts (bags, checkpoints). A
  unit whose artifact a later unit needs but which is gone (another machine) is run again first: deployment and
  training are deterministic.
* ``--workers N`` runs up to N ready units at once in processes of their own (each graph takes its own
  ROS_DOMAIN_ID); each evaluation or deployment runs ``--graphs`` graphs. On 2 cores keep ``--workers 1``.
* ``OUT/results.json``: versions, commit, the protocol, the seeds, every per-seed outcome, the tables' numbers,
  the winner by the protocol's rule (once every unit it needs is there); ``OUT/results.png``. ``report``
  prints the README's results section from ``results.json`` (``--readme``: replaces it between the markers
  ``<!-- experiment:begin -->`` and ``<!-- experiment:end -->``).

Ctrl-C stops after saving what finished (a training saves a resumable checkpoint); run the same command to go on.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from hapo_bringup.experiment_plan import Plan, PlanError, Unit, load, plan, train_config


class ExperimentError(RuntimeError):
    """A unit failed; the text names it and its log."""


def _write_json(path: Path, body: Any) -> None:
    from hapo_policy.checkpoint import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(body, indent=1, sort_keys=True) + '\n')


class Store:
    """Where units keep their outcomes (``out/units``) and artifacts (``work``)."""

    def __init__(self, out: Path, work: Path, graphs: int):
        self.out, self.work, self.graphs = out, work, graphs

    def outcome_path(self, u: Unit) -> Path:
        return self.out / 'units' / u.stage / f'{u.key}.json'

    def outcome(self, u: Unit) -> dict[str, Any] | None:
        path = self.outcome_path(u)
        return json.loads(path.read_text())['outcome'] if path.exists() else None

    def artifact(self, u: Unit) -> Path:
        return self.work / u.stage / u.key

    def policy(self, u: Unit) -> Path:
        """The checkpoint a base or train unit produced."""
        from hapo_bringup.graph import config_dir

        if u.stage == 'base' and 'shipped' in u.params:
            return config_dir() / u.params['shipped']
        return self.artifact(u) / 'policy'

    def has_artifact(self, u: Unit) -> bool:
        if u.stage in ('base', 'train'):
            return (self.policy(u) / 'config.json').exists()
        if u.stage in ('demos', 'round'):
            return (self.artifact(u) / 'done').exists()
        return True  # an evaluation leaves nothing another unit reads


# -- the stages (each runs in the unit's process; returns the outcome) ---------------------------------------------

def _demos(u: Unit, s: Store) -> dict[str, Any]:
    from hapo_bringup.collect_demos import main as collect
    from hapo_recorder.bag_reader import list_episodes, read_metadata

    a, b = u.params['seeds']
    bags = s.artifact(u) / 'bags'
    if collect(['--seeds', f'{a}:{b}', '--scenario', u.params['scenario'], '--out', str(bags),
                '--workers', str(s.graphs)]) != 0:
        raise ExperimentError('collect-demos failed')
    outcomes = [(read_metadata(p) or {}).get('outcome') for p in list_episodes([bags])]
    return {'episodes': len(outcomes), 'successes': outcomes.count('success')}


def _base(u: Unit, s: Store) -> dict[str, Any]:
    from hapo_bringup.train_base import main as train_base
    from hapo_policy.checkpoint import policy_id, weights_files

    if 'shipped' in u.params:
        return {'policy_id': policy_id(weights_files(s.policy(u)))}
    out = s.artifact(u)
    argv = ['--bags', str(s.artifact(u.deps[0]) / 'bags'), '--out', str(out), '--epochs', str(u.params['epochs']),
            '--eval-every', str(u.params['eval_every']), '--workers', str(s.graphs), '--no-progress']
    if train_base(argv + (['--resume'] if out.exists() else [])) != 0:
        raise ExperimentError('train-base failed')
    manifest = json.loads((out / 'manifest.json').read_text())
    return {'policy_id': manifest['policy_id'], 'chosen_epoch': manifest.get('chosen_epoch'),
            'selection': manifest.get('selection')}


def _round(u: Unit, s: Store) -> dict[str, Any]:
    from hapo_bringup.deploy_round import deploy

    a, b = u.params['seeds']
    out = s.artifact(u)
    with contextlib.suppress(FileNotFoundError):
        (out / 'deploy.json').unlink()  # a rerun deploys again (the bags may be gone)
    body = deploy(s.policy(u.deps[0]), u.params['scenario'], range(a, b), out, u.params['overrides'], s.graphs)
    (out / 'done').write_text('')
    return {k: body[k] for k in ('policy_id', 'seeds', 'success_rate', 'intervention_ratio', 'takeover_reasons',
                                 'episodes')}


def _train(u: Unit, s: Store) -> dict[str, Any]:
    from hapo_trainer.config import dump_yaml
    from hapo_trainer.optimize import main as optimize
    from hapo_trainer.train_state import latest_checkpoint

    p, out = u.params, s.artifact(u)
    policy, bags = s.policy(u.deps[0]), [str(s.artifact(d) / 'bags') for d in u.deps[1:]]
    cfg = train_config(p)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'arm.yaml').write_text(dump_yaml(cfg))
    train = out / 'train'
    argv = ['--bags', *bags, '--policy', str(policy), '--out', str(train), '--config', str(out / 'arm.yaml'),
            '--no-progress']
    code = optimize(argv + (['--resume'] if latest_checkpoint(train) is not None else []))
    if code == 130:
        raise KeyboardInterrupt
    if code != 0:
        raise ExperimentError(f'optimize failed (exit {code})')
    from hapo_policy.checkpoint import atomic_dir, policy_id, weights_files

    with atomic_dir(out / 'policy') as tmp:
        for f in (train / 'policy').iterdir():
            shutil.copy2(f, tmp / f.name)
    return {'policy_id': policy_id(weights_files(out / 'policy')), 'diagnostics': diagnostics(train / 'metrics.jsonl'),
            'micro_batch': cfg.optim.micro_batch}


def diagnostics(path: Path) -> dict[str, Any]:
    """Per-class r and lambda, z0, the loss and the paired term's: their means over the run's log steps and their
    last values."""
    rows = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        rows[row['step']] = row  # a resumed run logs some steps again: the last wins
    groups = ('r', 'lambda', 'kl', 'loss', 'batch', 'pairs')
    keys = sorted({k for r in rows.values() for k in r if k.split('/')[0] in groups})
    mean = {}
    for k in keys:
        vals = [r[k] for r in rows.values() if r.get(k) is not None]
        mean[k] = round(sum(vals) / len(vals), 5) if vals else None
    last = rows[max(rows)] if rows else {}
    return {'mean': mean, 'last': {k: last.get(k) for k in keys}, 'log_steps': len(rows)}


def _eval(u: Unit, s: Store) -> dict[str, Any]:
    from hapo_bringup.evaluate_sim import evaluate_sim

    a, b = u.params['seeds']
    result = evaluate_sim(s.policy(u.deps[0]), range(a, b), [f'scenario:={u.params["scenario"]}',
                                                            *u.params['overrides']], workers=s.graphs)
    if result.get('interrupted'):
        raise KeyboardInterrupt
    keep = ('seed', 'success', 'steps', 'end', 'actions_digest', 'states_digest')
    return {'policy_id': result['policy_id'], 'success_rate': result['success_rate'], 'wilson95': result['wilson95'],
            'episodes': [{k: e[k] for k in keep if k in e} for e in result['episodes']]}


STAGES = {'demos': _demos, 'base': _base, 'round': _round, 'train': _train, 'eval': _eval}


def _cpu_s() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_unit(u: Unit, s: Store) -> dict[str, Any]:
    """Run ``u`` (first re-running any dependency whose artifact is gone) and write its outcome."""
    for d in u.deps:
        if not s.has_artifact(d):
            run_unit(d, s)
    log = s.out / 'logs' / f'{u.stage}-{u.key}.log'
    log.parent.mkdir(parents=True, exist_ok=True)
    cpu0, t0 = _cpu_s(), time.monotonic()
    with log.open('a') as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        try:
            outcome = STAGES[u.stage](u, s)
        except Exception as exc:  # any failure of one unit is that unit's, with its traceback in its log
            traceback.print_exc()
            raise ExperimentError(f'{u.label} ({u.key}): {exc}; log {log}') from None
    body = {'stage': u.stage, 'key': u.key, 'params': u.params, 'deps': [d.key for d in u.deps],
            'outcome': outcome, 'cpu_s': round(_cpu_s() - cpu0, 1), 'wall_s': round(time.monotonic() - t0, 1),
            'finished': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
    previous = s.outcome(u)
    if previous is not None and _comparable(previous) != _comparable(outcome):
        print(f'hapo experiment: warning: {u.label} ran again and its outcome differs from the stored one',
              file=sys.stderr)
    _write_json(s.outcome_path(u), body)
    return body


def _comparable(outcome: dict[str, Any]) -> Any:
    return {k: v for k, v in outcome.items() if k not in ('diagnostics',)}


def _child(u: Unit, s: Store) -> None:
    run_unit(u, s)


def run(p: Plan, s: Store, workers: int, only: set[str] | None = None) -> tuple[int, list[str]]:
    """Every unit of ``p`` without an outcome, in order, up to ``workers`` at once: the number that ran, and one
    line per unit that failed (the run goes on without the units that depend on it)."""
    from tqdm import tqdm

    todo = [u for u in p.units if s.outcome(u) is None and (only is None or u.stage in only)]
    done = {u.key for u in p.units if s.outcome(u) is not None}
    failed: dict[str, str] = {}
    bar = tqdm(total=len(todo), desc='experiment', unit='unit')

    def blocked(u: Unit) -> bool:
        bad = [d for d in u.deps if d.key in failed or (d.key not in done and only is not None and d.stage
                                                         not in only)]
        if bad:
            failed[u.key] = f'{u.label}: not run, {bad[0].label} ' + ('failed' if bad[0].key in failed else
                                                                       'is not in this run (--only)')
            bar.update(1)
        return bool(bad)

    def finished(u: Unit, error: ExperimentError | None) -> None:
        if error is None:
            done.add(u.key)
        else:
            failed[u.key] = str(error)
            tqdm.write(f'hapo experiment: {error}', file=sys.stderr)
        bar.update(1)

    if workers <= 1:
        for u in todo:
            if blocked(u):
                continue
            bar.set_postfix_str(u.label)
            try:
                run_unit(u, s)
                finished(u, None)
            except ExperimentError as exc:
                finished(u, exc)
    else:
        running: dict[Any, Unit] = {}
        with ProcessPoolExecutor(workers, mp_context=get_context('spawn')) as pool:
            while todo or running:
                for u in list(todo):
                    if blocked(u):
                        todo.remove(u)
                    elif len(running) < workers and all(d.key in done for d in u.deps):
                        todo.remove(u)
                        running[pool.submit(_child, u, s)] = u
                if not running:
                    if todo:
                        raise ExperimentError(f'{todo[0].label}: waits on a unit that is not in this run')
                    continue
                ready, _ = wait(running, return_when=FIRST_COMPLETED)
                for f in ready:
                    u = running.pop(f)
                    try:
                        f.result()
                        finished(u, None)
                    except ExperimentError as exc:
                        finished(u, exc)
    bar.close()
    return bar.n - len(failed), list(failed.values())


# -- results -----------------------------------------------------------------------------------------------------

def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ('torch', 'mujoco', 'robosuite', 'numpy'):
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out['commit'] = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                                       timeout=5, cwd=Path(__file__).parent).stdout.strip()
    return out


def results(p: Plan, s: Store) -> dict[str, Any]:
    """Everything the tables need, from the stored outcomes (missing units are listed, not guessed)."""
    from hapo_bringup.experiment_stats import cell, lifelong, winner

    cfg = p.config
    missing = [u.label for u in p.units if s.outcome(u) is None]
    tables: dict[str, Any] = {}
    for task, spec in cfg['tasks'].items():
        base = p.bases[task]
        for scenario in spec['disruptions']:
            arms = {}
            for arm in cfg['arms']:
                units = [u for (t, sc, a, _), u in p.arms.items() if (t, sc, a) == (task, scenario, arm)]
                arms[arm] = {where: cell(s.outcome(p.evals[(base.key, sc_)]),
                                         [s.outcome(p.evals[(u.key, sc_)]) for u in units],
                                         [s.outcome(u) for u in units])
                             for where, sc_ in (('adaptation', scenario), ('retention', spec['original']))}
            deployed = s.outcome(p.rounds[(task, scenario)])
            tables[f'{task}/{scenario}'] = {
                'task': task, 'disruption': scenario, 'original': spec['original'], 'arms': arms,
                'round': None if deployed is None else {k: deployed[k] for k in ('success_rate', 'intervention_ratio',
                                                                                  'seeds')}}
    chains = {f'{arm}/seed{seed}': lifelong(chain, s.outcome) for (arm, seed), chain in p.chains.items()}
    units = {u.key: json.loads(s.outcome_path(u).read_text()) for u in p.units if s.outcome(u) is not None}
    return {'versions': _versions(), 'config': cfg, 'evaluation_seeds': cfg['evaluation']['seeds'],
            'complete': not missing, 'missing': missing, 'tables': tables, 'lifelong': chains,
            'winner': winner(tables, cfg) if not missing else None,
            'cpu_s': {st: round(sum(b['cpu_s'] for b in units.values() if b['stage'] == st), 1)
                      for st in ('demos', 'base', 'round', 'train', 'eval')},
            'units': units}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['report']:
        from hapo_bringup.experiment_stats import report_main

        return report_main(argv[1:])
    from hapo_bringup.graph import config_dir

    doc = __doc__ or ''
    ap = argparse.ArgumentParser(prog='hapo experiment', formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description=doc.split('\n\n')[0], epilog=doc.split('\n\n', 1)[1])
    ap.add_argument('--config', type=Path, default=config_dir() / 'experiment.yaml',
                    help='the protocol (default: config/experiment.yaml)')
    ap.add_argument('--out', type=Path, default=Path('runs/exp'),
                    help='results.json, units/, logs/ (default: %(default)s)')
    ap.add_argument('--work', type=Path, default=None, help='bags and checkpoints (default: OUT/work)')
    ap.add_argument('--quick', action='store_true', help="the protocol's quick: sizes (minutes)")
    ap.add_argument('--workers', type=int, default=1, help='units at once, each in its own process (default: 1)')
    ap.add_argument('--graphs', type=int, default=2, help='graphs per evaluation or deployment (default: 2)')
    ap.add_argument('--only', default=None, metavar='STAGE,...', help='run only these stages (demos, base, round, '
                    'train, eval); results.json still covers everything stored')
    ap.add_argument('--dry-run', action='store_true', help='list the units to run and exit')
    ap.add_argument('--results-only', action='store_true', help='run nothing: write results.json, the plot and the '
                    'report from the outcomes stored so far')
    args = ap.parse_args(argv)
    from hapo_policy.checkpoint import policy_id, weights_files

    try:
        cfg = load(args.config, args.quick)
        p = plan(cfg, lambda name: policy_id(weights_files(config_dir() / name)))
    except (PlanError, OSError) as exc:
        print(f'hapo experiment: {exc}', file=sys.stderr)
        return 2
    s = Store(args.out.absolute(), (args.work or args.out / 'work').absolute(), args.graphs)
    only = set(args.only.split(',')) if args.only else None
    if args.dry_run:
        for u in p.units:
            if s.outcome(u) is None and (only is None or u.stage in only):
                print(f'{u.key} {u.label}')
        return 0
    os.environ.setdefault('MUJOCO_GL', 'egl')
    code = 0
    try:
        n, failures = run(p, s, args.workers, only) if not args.results_only else (0, [])
        print(f'hapo experiment: {n} units run, {len(p.units)} in the protocol'
              + (f', {len(failures)} failed or blocked:' if failures else ''), file=sys.stderr)
        for line in failures:
            print(f'  {line}', file=sys.stderr)
        code = 1 if failures else 0
    except ExperimentError as exc:
        print(f'hapo experiment: {exc}', file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print(f'hapo experiment: interrupted; run the same command to continue {args.out}', file=sys.stderr)
        code = 130
    body = results(p, s)
    _write_json(s.out / 'results.json', body)
    from hapo_bringup.experiment_stats import plot, report

    plot(body, s.out / 'results.png')
    print(report(body))
    return code


if __name__ == '__main__':
    sys.exit(main())
