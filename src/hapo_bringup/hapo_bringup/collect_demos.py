# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Scripted expert demonstrations on the simulated robot, recorded through the real graph as a person's are.

    hapo collect-demos --episodes 200 --out runs/demos [--scenario lift] [--seeds 0:200] [--workers 2] [k:=v ...]

Each worker is one graph on a ROS_DOMAIN_ID of its own, running a contiguous share of the seeds: ``sim_node``
(lockstep, ``demo:=true``: every START says so), ``mux_node``, ``expert_node`` (the expert at the joystick:
Joy into the mux with the deadman held, so every step is executed with source human, paired with the
observation the expert computed it from) and ``recorder_node``. Every worker writes into DIR itself (the bag
writer's atomic directory creation keeps names unique), so ``hapo bag-info DIR`` and ``--bags DIR`` see every
demo. The bags are marked demo, so the dataset labels every step c = 1.

Every episode is recorded, failures too: the outcome is in each bag's metadata (``hapo train-base`` keeps the
successes). Re-running with the same DIR skips the seeds it already holds completely (a closed demo bag of
the task, outcome success or failure) and first removes the incomplete bags of the seeds it runs again
(aborted by Ctrl-C, cut by a crash). Ctrl-C keeps the episodes that ended (exit 130).

The scenario (default ``lift``: plain Lift, the base policy's cameras agentview + robot0_eye_in_hand at 64 px)
goes over config/deploy.yaml and ``key:=value`` over both. Seeds default to the first N demo seeds
(``hapo_sim.seeds``). The joystick mapping puts every motion dim on an axis, ``axis_map:=[1,0,4,6,7,3]`` (roll
and pitch on the d-pad axes), for mux and expert alike: with the Xbox default (``[1,0,4,-1,-1,3]``) the
expert's roll and pitch (its orientation hold and noise) would be lost, executed as 0. The gripper goes
through the toggle button, so it is binary (the experts' is). Output on stdout::

    {task, scenario, seeds: [a, b], out, workers, episodes: [{seed, outcome, success, steps, bag}], recorded, skipped,
     success_rate, startup_s, elapsed_s, episodes_per_min}

(``episodes`` covers every requested seed; the rates count this run's episodes from its first START.)
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hapo_bringup.evaluate_sim import split
from hapo_bringup.graph import NodeSpec, config_dir, resolve
from hapo_bringup.runner import GraphRunner, log_tail
from hapo_interfaces.params import ParamError, from_mapping
from hapo_sim import seeds as seed_uses

COLLECT_GRAPH: tuple[NodeSpec, ...] = (
    NodeSpec('hapo_sim', 'sim_node', 'sim_node', 'hapo_sim.sim_params:SimParams'),
    NodeSpec('hapo_teleop', 'mux_node', 'mux_node', 'hapo_teleop.mux:MuxParams'),
    NodeSpec('hapo_sim', 'expert_node', 'expert_node', 'hapo_sim.joy_expert:ExpertParams'),
    NodeSpec('hapo_recorder', 'recorder_node', 'recorder_node', 'hapo_recorder.params:RecorderParams'),
)
DEFAULT_OVERRIDES = ('axis_map:=[1,0,4,6,7,3]',)
FIXED_OVERRIDES = ('mode:=lockstep', 'lockstep:=true', 'auto_reset:=true', 'demo:=true', 'input_device:=expert_node')
COMPLETE = ('success', 'failure')


class CollectError(RuntimeError):
    """The demos could not be collected (a node died or stalled, DIR is busy); the text says which and why."""


def graph_params(overrides: Sequence[str], config: Path, scenario: str = 'lift') -> dict[str, dict[str, Any]]:
    """Every node's parameters (worker-independent), checked (ParamError) before any process starts.

    The expert drives the sim's task through the mux's joystick mapping: both are copied from those nodes.
    """
    layers = [f'scenario:={scenario}', *DEFAULT_OVERRIDES, *overrides, *FIXED_OVERRIDES]
    _, params = resolve(config, layers, graph=COLLECT_GRAPH)
    from hapo_sim.env import SimError
    from hapo_sim.joy_expert import ExpertParams, JoyExpert

    try:
        JoyExpert(from_mapping(ExpertParams, params['expert_node']))  # the task has an expert, the mapping works
    except SimError as exc:
        raise ParamError(str(exc)) from None
    return params


@dataclass
class Recorded:
    """The demo bags of one task in DIR, by seed: complete (closed with an outcome) and incomplete."""

    complete: dict[int, tuple[Path, dict]] = field(default_factory=dict)
    incomplete: dict[int, list[Path]] = field(default_factory=dict)

    @classmethod
    def scan(cls, out: Path, task: str) -> Recorded:
        from hapo_recorder.bag_reader import BagError, list_episodes, read_episode, read_metadata

        found = cls()
        for path in list_episodes([out]) if out.is_dir() else []:
            try:
                meta = read_metadata(path)
                if meta is None:  # cut by a crash: the episode-info tag names task and seed
                    meta = read_episode(path, decode_images=False).metadata
            except BagError:
                continue  # not ours to judge; hapo bag-info reports it
            if not meta.get('demo') or meta.get('task') != task or str(meta.get('seed', '')) == '':
                continue
            seed = int(meta['seed'])
            if meta.get('outcome') in COMPLETE:
                found.complete.setdefault(seed, (path, meta))
            else:
                found.incomplete.setdefault(seed, []).append(path)
        return found


@dataclass
class Worker:
    """One graph running ``seeds``, writing into the shared DIR."""

    seeds: range
    runner: GraphRunner
    log: Path
    stopped: bool = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.runner.stop()
            self.runner.out.close()


def _start_worker(seeds: range, params: dict[str, dict[str, Any]], out: Path, log_dir: Path) -> Worker:
    from hapo_ros.background import reserve_domain_id

    params = {name: dict(values) for name, values in params.items()}
    params['sim_node'].update(seed=seeds.start, max_episodes=len(seeds), wait_for=['recorder_node', 'expert_node'])
    params['recorder_node']['output_root'] = str(out)
    log = log_dir / f'worker-{seeds.start}.log'
    runner = GraphRunner(COLLECT_GRAPH, params, out=log.open('w'), env={'ROS_DOMAIN_ID': str(reserve_domain_id())})
    runner.start()
    return Worker(seeds, runner, log)


@contextlib.contextmanager
def _lock(out: Path):
    out.mkdir(parents=True, exist_ok=True)
    with (out / '.collect-demos.lock').open('w') as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CollectError(f'--out {out}: another hapo collect-demos writes into it') from None
        yield


def collect_demos(seeds: range, out: Path, overrides: Sequence[str] = (), workers: int = 1,
                  config: Path | None = None, scenario: str = 'lift', stall_s: float = 120.0,
                  log: Callable[[str], None] = print,
                  progress: Callable[[bool], None] | None = None,
                  plan: Callable[[list[int]], None] | None = None) -> dict[str, Any]:
    """Record the demos of ``seeds`` into ``out`` (module docstring); the result dict.

    ``plan(todo)`` gets the seeds this run records (the others are in ``out`` already), ``progress(success)`` is
    called once per episode it records.
    """
    config = config or config_dir() / 'deploy.yaml'
    params = graph_params(overrides, config, scenario)
    task = params['expert_node']['task']
    t0, interrupted = time.time(), False
    with _lock(out), tempfile.TemporaryDirectory(prefix='hapo-collect-') as tmp:
        before = Recorded.scan(out, task)
        todo = [s for s in seeds if s not in before.complete]
        if plan:
            plan(todo)
        for seed in todo:
            for path in before.incomplete.get(seed, []):
                log(f'removing the incomplete demo bag of seed {seed}: {path}')
                shutil.rmtree(path)
        shares = _shares(todo, workers)
        pool = Pool(shares, workers, lambda share: _start_worker(share, params, out, Path(tmp)))
        try:
            pool.run(out, task, set(_bags(out)), stall_s, progress)
        except KeyboardInterrupt:
            interrupted = True  # keep the episodes that ended
        finally:
            pool.stop()
        after = Recorded.scan(out, task)
        for seed in todo:  # what Ctrl-C cut off: the next run records it again
            for path in after.incomplete.get(seed, []):
                shutil.rmtree(path, ignore_errors=True)
    episodes = [_episode(seed, *after.complete[seed]) for seed in seeds if seed in after.complete]
    new = [after.complete[s][1] for s in todo if s in after.complete]
    first = min((int(m['start_ns']) for m in new), default=0) / 1e9
    elapsed = max(max((int(m['end_ns']) for m in new), default=0) / 1e9 - first, 1e-9)
    return {'task': task, 'scenario': params['sim_node'].get('scenario', ''), 'seeds': [seeds.start, seeds.stop],
            'out': str(out), 'workers': min(workers, len(shares)),
            'episodes': episodes, 'recorded': len(new), 'skipped': len(seeds) - len(todo),
            'success_rate': round(sum(e['success'] for e in episodes) / len(episodes), 4) if episodes else 0.0,
            'startup_s': round(first - t0, 2) if new else None, 'elapsed_s': round(elapsed, 2) if new else 0.0,
            'episodes_per_min': round(60 * len(new) / elapsed, 2) if new else 0.0,
            **({'interrupted': True} if interrupted else {})}


def _episode(seed: int, path: Path, meta: dict) -> dict[str, Any]:
    return {'seed': seed, 'outcome': meta['outcome'], 'success': meta['outcome'] == 'success',
            'steps': int(meta.get('steps', 0)), 'bag': path.name}


def _shares(todo: list[int], workers: int) -> list[range]:
    """The seeds to record as contiguous shares (one graph each): the gap-free runs, the longest split in two
    until there are ``workers`` of them (a first run: ``workers`` even shares)."""
    runs: list[range] = []
    for seed in todo:
        if runs and runs[-1].stop == seed:
            runs[-1] = range(runs[-1].start, seed + 1)
        else:
            runs.append(range(seed, seed + 1))
    while runs and len(runs) < workers and max(map(len, runs)) > 1:
        longest = max(runs, key=len)
        i = runs.index(longest)
        runs[i:i + 1] = split(longest, 2)
    return runs


def _bags(out: Path) -> list[Path]:
    from hapo_recorder.bag_reader import list_episodes

    return list_episodes([out])


class Pool:
    """At most ``size`` graphs at a time over ``shares``; a graph whose seeds are all recorded is stopped at once
    (frees its CPU) and the next share starts."""

    def __init__(self, shares: list[range], size: int, start: Callable[[range], Worker]):
        self.pending, self.size, self.start = list(shares), size, start
        self.running: list[Worker] = []

    def run(self, out: Path, task: str, seen: set[Path], stall_s: float,
            progress: Callable[[bool], None] | None) -> None:
        from hapo_recorder.bag_reader import read_metadata

        done: set[int] = set()
        last_change = time.monotonic()
        while self.pending or self.running:
            while self.pending and len(self.running) < self.size:
                self.running.append(self.start(self.pending.pop(0)))
            time.sleep(0.2)
            for path in _bags(out):
                meta = None if path in seen else read_metadata(path)
                if meta is None:
                    continue  # known, or still open
                seen.add(path)
                if meta.get('task') == task and meta.get('outcome') in COMPLETE and str(meta.get('seed', '')):
                    done.add(int(meta['seed']))
                    last_change = time.monotonic()
                    if progress:
                        progress(meta['outcome'] == 'success')
            for w in list(self.running):
                why = w.runner.exited()
                if all(s in done for s in w.seeds):
                    w.stop()
                    self.running.remove(w)
                elif why:
                    raise CollectError(f'seeds {w.seeds.start}:{w.seeds.stop}: {why}; its last output:\n'
                                       f'{log_tail(w.log)}')
            if self.running and time.monotonic() - last_change > stall_s:
                w = self.running[0]
                raise CollectError(f'no episode ended for {stall_s:.0f} s (seeds {w.seeds.start}:{w.seeds.stop}); '
                                   f'its last output:\n{log_tail(w.log)}')

    def stop(self) -> None:
        for w in self.running:
            w.stop()
        self.running.clear()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog='hapo collect-demos', formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1])
    ap.add_argument('overrides', nargs='*', metavar='key:=value',
                    help='graph parameters (hapo deploy --help; expert_node: task, noise_std, axis_map, ...)')
    ap.add_argument('--episodes', type=int, default=None, help='number of demos (the first N demo seeds unless '
                                                               '--seeds)')
    ap.add_argument('--seeds', default=None, metavar='A:B', help='episode seeds A..B-1 (default 0:EPISODES)')
    ap.add_argument('--scenario', default='lift', metavar='FILE|NAME',
                    help='scenario (config/scenarios: lift, lift_far, pick_place_can, ...; default %(default)s); '
                         'the same as scenario:=FILE')
    ap.add_argument('--out', type=Path, required=True, help='directory the demo bags go into (created)')
    ap.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1),
                    help='parallel graphs, one ROS domain each (default: %(default)s)')
    ap.add_argument('--config', type=Path, default=None, help='deploy parameter YAML (default: config/deploy.yaml)')
    ap.add_argument('--stall-s', type=float, default=120.0, help='give up when no episode ends for this long')
    args = ap.parse_args(argv)
    try:
        seeds = _seeds(args.episodes, args.seeds)
        if args.workers < 1:
            raise ParamError(f'--workers {args.workers}: need at least 1')
        graph_params(args.overrides, args.config or config_dir() / 'deploy.yaml', args.scenario)
    except (ParamError, seed_uses.SeedError) as exc:
        print(f'hapo collect-demos: {exc}', file=sys.stderr)
        return 2
    from tqdm import tqdm

    warning = seed_uses.check(seeds, 'demos')
    if warning:
        print(f'hapo collect-demos: warning: {warning}', file=sys.stderr)

    print(f'hapo collect-demos: seeds {seeds.start}:{seeds.stop} into {args.out}', file=sys.stderr)
    ok = [0]
    try:
        with tqdm(desc='collect-demos', unit='episode', total=len(seeds)) as bar:
            def planned(todo: list[int]) -> None:
                if len(todo) < len(seeds):
                    bar.write(f'{len(seeds) - len(todo)} seeds already recorded in {args.out}: skipped',
                              file=sys.stderr)
                bar.reset(total=len(todo))

            def tick(success: bool) -> None:
                ok[0] += success
                bar.update(1)
                bar.set_postfix(success=ok[0])

            result = collect_demos(seeds, args.out, args.overrides, args.workers, args.config, args.scenario,
                                   args.stall_s, log=lambda m: bar.write(m, file=sys.stderr), progress=tick,
                                   plan=planned)
    except (ParamError, CollectError) as exc:
        print(f'hapo collect-demos: {exc}', file=sys.stderr)
        return 2
    n = len(result['episodes'])
    print(f'hapo collect-demos: {n} of {len(seeds)} seeds recorded in {args.out} ({result["recorded"]} now, '
          f'{result["skipped"]} before), {result["success_rate"]:.1%} success; {result["episodes_per_min"]} '
          f'episodes/min', file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 130 if result.get('interrupted') else 0


def _seeds(episodes: int | None, text: str | None) -> range:
    if text is None and episodes is None:
        raise ParamError('give --episodes N (seeds 0..N-1) or --seeds A:B')
    if episodes is not None and episodes < 1:
        raise ParamError(f'--episodes {episodes}: need at least 1')
    seeds = seed_uses.parse(text) if text is not None else seed_uses.first('demos', episodes)
    if episodes is not None and len(seeds) != episodes:
        raise ParamError(f'--episodes {episodes} but --seeds {text} holds {len(seeds)} seeds')
    return seeds


if __name__ == '__main__':
    sys.exit(main())
