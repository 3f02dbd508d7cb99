# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Closed-loop evaluation on the simulated robot, through the deployment graph (sim + policy + mux).

    hapo evaluate-sim --policy CKPT --seeds 100000:100050 [--scenario lift] [--operator] [--workers 2] [--out r.json]
                      [k:=v ...]

Each worker is one graph (``sim_node``, ``policy_node``, ``mux_node``, lockstep, no recorder, no joystick) on a
ROS_DOMAIN_ID of its own, running a contiguous share of the seeds: episode i of a worker uses seed start + i.
With ``--operator`` the simulated operator (``operator_node``, graph switch ``operator:=true``) watches too and
takes over when the policy is about to fail, as a person would; the result then reports the intervention ratio
(human steps / (policy + human steps); holds do not count) and why it took over. A node in this process counts,
per episode, the outcome (``hapo/episode``), the executed steps by source (``hapo/cmd``) and the takeovers
(``hapo/operator``; see ``episode_tally``). Lockstep and greedy decoding make it reproducible: the same checkpoint and
seeds give the same outcomes and the same executed actions (``actions_digest``), with any number of workers.
The sim renders the cameras the checkpoint names, at its image size (``graph.checkpoint_params``).
Output (also the schema ``hapo compare`` reads)::

    {policy, policy_id, scenario, seeds: [a, b], seed_uses (hapo_sim.seeds),
     episodes: [{seed, success, steps, takeovers, human_steps, reasons, ...}], success_rate, wilson95,
     operator, intervention_ratio, takeover_reasons, intervention_ratio_by_reason,
     workers, startup_s, elapsed_s, steps_per_s, episodes_per_min}

The rates count from the first episode's start (``startup_s`` is the time the nodes took to come up).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hapo_bringup.episode_tally import EpisodeTally
from hapo_bringup.graph import config_dir, resolve
from hapo_bringup.runner import GraphRunner, log_tail
from hapo_interfaces.params import ParamError
from hapo_sim import seeds as seed_uses
from hapo_trainer.compare import summarize

BASE_OVERRIDES = ('record:=false', 'joy:=false', 'mode:=lockstep', 'auto_reset:=true')


class EvaluationError(RuntimeError):
    """The graph did not finish the episodes (a node died or stalled); the text says which and why."""


def split(seeds: range, workers: int) -> list[range]:
    """Contiguous shares of ``seeds``, as even as possible, none empty."""
    n = max(1, min(workers, len(seeds)))
    bounds = [seeds.start + len(seeds) * i // n for i in range(n + 1)]
    return [range(bounds[i], bounds[i + 1]) for i in range(n)]


def graph_overrides(policy: Path, overrides: Sequence[str], config: Path, operator: bool = False) -> list[str]:
    """The overrides every worker's graph gets, checked (ParamError) before any process starts."""
    overrides = [f'checkpoint:={policy}', *(['operator:=true'] if operator else []), *overrides]
    _, params = resolve(config, [*BASE_OVERRIDES, *overrides])
    if 'operator_node' in params:
        from hapo_interfaces.params import from_mapping
        from hapo_sim.env import SimError
        from hapo_sim.operator import OperatorParams, SimOperator

        try:
            SimOperator(from_mapping(OperatorParams, params['operator_node']))  # an expert for the task, a phase
        except SimError as exc:
            raise ParamError(f'operator_node: {exc}') from None
    return overrides


@dataclass
class Worker:
    """One graph running ``seeds`` and the tally of what it did."""

    seeds: range
    runner: GraphRunner
    log: Path
    tally: EpisodeTally
    listener: Any
    policy_id: list


def _start_worker(seeds: range, overrides: Sequence[str], config: Path, log_dir: Path) -> Worker:
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    from hapo_interfaces import topics
    from hapo_interfaces.records import RecordError, decode_event, read_step
    from hapo_interfaces.stamps import to_ns
    from hapo_ros.background import BackgroundNode, reserve_domain_id
    from hapo_ros.qos import LATCHED

    nodes, params = resolve(config, [*BASE_OVERRIDES, *overrides, f'seed:={seeds.start}',
                                     f'max_episodes:={len(seeds)}'])
    counter = f'hapo_evaluate_{seeds.start}'  # sim_node waits for it (and the operator, the recorder) to listen
    params['sim_node']['wait_for'] = [*(w for w in params['sim_node'].get('wait_for', []) if w), counter]
    domain = reserve_domain_id()
    tally, policy_id = EpisodeTally(), []
    listener = BackgroundNode(counter, domain)

    def on_event(msg):
        with contextlib.suppress(RecordError):  # not ours to judge: the recorder reports malformed events
            tally.event(decode_event(msg.data))

    reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    listener.node.create_subscription(String, topics.EPISODE, on_event, reliable)
    listener.node.create_subscription(JointState, topics.CMD, lambda m: tally.step(read_step(m)), reliable)
    listener.node.create_subscription(JointState, topics.JOINT_STATES,
                                      lambda m: tally.state(to_ns(m.header.stamp), m.position), reliable)
    listener.node.create_subscription(String, topics.POLICY_ID, lambda m: policy_id.append(m.data), LATCHED)
    listener.node.create_subscription(String, topics.OPERATOR, lambda m: tally.operator(json.loads(m.data)), reliable)
    log = log_dir / f'worker-{seeds.start}.log'
    runner = GraphRunner(nodes, params, out=log.open('w'), env={'ROS_DOMAIN_ID': str(domain)})
    runner.start()
    return Worker(seeds, runner, log, tally, listener, policy_id)


def evaluate_sim(policy: Path, seeds: range, overrides: Sequence[str] = (), workers: int = 1,
                 config: Path | None = None, stall_s: float = 120.0,
                 progress: Callable[[int], None] | None = None, operator: bool = False,
                 record: Path | None = None) -> dict[str, Any]:
    """Run ``seeds`` with ``policy`` through ``workers`` graphs; the result dict (module docstring). ``record``: a
    directory the recorder of every graph writes its episode bags into (returns once they are closed)."""
    config = config or config_dir() / 'deploy.yaml'
    recording = ['record:=true', f'output_root:={record}'] if record is not None else []
    overrides = graph_overrides(policy, [*overrides, *recording], config, operator)
    t0, interrupted = time.monotonic(), False
    with tempfile.TemporaryDirectory(prefix='hapo-evaluate-') as tmp:
        running: list[Worker] = []
        try:
            for share in split(seeds, workers):
                running.append(_start_worker(share, overrides, config, Path(tmp)))
            _wait(running, len(seeds), stall_s, progress)
            if record is not None:
                _wait_closed(record, len(seeds), stall_s)
        except KeyboardInterrupt:
            interrupted = True  # keep the episodes that ended
        finally:
            t1 = time.monotonic()
            for w in running:
                w.runner.stop()
                w.listener.close()
                w.runner.out.close()
    up = min((w.tally.first_start for w in running if w.tally.first_start), default=t1)
    elapsed = max(t1 - up, 1e-9)  # from the first episode's start: the rates exclude starting the nodes
    episodes = sorted((e for w in running for e in w.tally.outcomes()), key=lambda e: e['seed'])
    steps = sum(e['steps'] for e in episodes)
    human = sum(e['human_steps'] for e in episodes)
    reasons = Counter(r for e in episodes for r in e['reasons'])
    by_reason = Counter()
    for e in episodes:
        by_reason.update(e['human_steps_by_reason'])
    # What the policy nodes announced (latched); a loaded machine may end a short run before the listener hears it:
    # then the checkpoint's own id, which is what the node computes from the same files.
    ids = {w.policy_id[-1] for w in running if w.policy_id} or {_checkpoint_id(policy)}
    return {'policy': str(policy), 'policy_id': ids.pop() if len(ids) == 1 else sorted(ids),
            'scenario': next((o.split(':=', 1)[1] for o in overrides if o.startswith('scenario:=')), None),
            'seeds': [seeds.start, seeds.stop], 'seed_uses': seed_uses.uses_of(seeds), 'episodes': episodes,
            **summarize(episodes), 'operator': 'operator:=true' in overrides,
            'intervention_ratio': round(human / steps, 4) if steps else 0.0, 'takeover_reasons': dict(reasons),
            'intervention_ratio_by_reason': {r: round(n / steps, 4) for r, n in by_reason.items()} if steps else {},
            'workers': len(running), 'startup_s': round(up - t0, 2), 'elapsed_s': round(elapsed, 2),
            'steps_per_s': round(steps / elapsed, 2),
            'episodes_per_min': round(60 * len(episodes) / elapsed, 2),
            **({'interrupted': True} if interrupted else {})}


def _checkpoint_id(policy: Path) -> str | None:
    from hapo_policy.checkpoint import CheckpointError, policy_id, weights_files

    try:
        return policy_id(weights_files(Path(policy)))
    except (CheckpointError, OSError):
        return None


def _wait_closed(out: Path, n: int, timeout_s: float) -> None:
    """Until ``out`` holds ``n`` closed bags (the recorder closes one a moment after its end event)."""
    from hapo_recorder.bag_reader import list_episodes, read_metadata

    deadline = time.monotonic() + timeout_s
    while sum(read_metadata(p) is not None for p in list_episodes([out])) < n:
        if time.monotonic() > deadline:
            raise EvaluationError(f'{out}: the recorder did not close {n} episode bags within {timeout_s:.0f} s')
        time.sleep(0.2)


def _wait(workers: list[Worker], total: int, stall_s: float, progress: Callable[[int], None] | None) -> None:
    done, steps, last_change = 0, 0, time.monotonic()
    while done < total:
        time.sleep(0.1)
        now = sum(min(w.tally.completed, len(w.seeds)) for w in workers)
        if now != done and progress:
            progress(now - done)
        seen = sum(w.tally.steps_seen for w in workers)
        if (now, seen) != (done, steps):
            done, steps, last_change = now, seen, time.monotonic()
        for w in workers:
            why = w.runner.exited()
            if why and w.tally.completed < len(w.seeds):
                raise EvaluationError(f'seeds {w.seeds.start}:{w.seeds.stop}: {why}; its last output:\n'
                                      f'{log_tail(w.log)}')
        if time.monotonic() - last_change > stall_s:
            w = min(workers, key=lambda w: w.tally.completed / len(w.seeds))
            raise EvaluationError(f'no step and no episode end for {stall_s:.0f} s (slowest: seeds '
                                  f'{w.seeds.start}:{w.seeds.stop}); '
                                  f'its last output:\n{log_tail(w.log)}')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog='hapo evaluate-sim', formatter_class=argparse.RawDescriptionHelpFormatter,
                                 description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1])
    ap.add_argument('overrides', nargs='*', metavar='key:=value', help='deploy-graph parameters (hapo deploy --help)')
    ap.add_argument('--policy', type=Path, required=True, help='checkpoint directory (save_pretrained)')
    ap.add_argument('--scenario', default=None, metavar='FILE|NAME', help='scenario (config/scenarios: lift, '
                    'lift_far, ...); the same as scenario:=FILE')
    ap.add_argument('--seeds', type=seed_uses.arg, required=True, metavar='A:B', help='episode seeds A..B-1')
    ap.add_argument('--operator', action='store_true', help='the simulated operator takes over when the policy is '
                    'about to fail (operator_node params: hapo deploy --help); reports the intervention ratio')
    ap.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1),
                    help='parallel graphs, one ROS domain each (default: %(default)s)')
    ap.add_argument('--config', type=Path, default=None, help='deploy parameter YAML (default: config/deploy.yaml)')
    ap.add_argument('--stall-s', type=float, default=120.0, help='give up when no graph executes a step for this long')
    ap.add_argument('--out', type=Path, default=None, help='write the result JSON here (default: stdout only)')
    ap.add_argument('--record', type=Path, default=None, metavar='DIR',
                    help='also record every episode as a bag in DIR (the recorder of each graph), e.g. for '
                         'hapo uncertainty or hapo bag-info --plot')
    args = ap.parse_args(argv)
    args.overrides = [f'scenario:={args.scenario}'] * (args.scenario is not None) + args.overrides
    if not args.policy.is_dir():
        print(f'hapo evaluate-sim: --policy {args.policy}: no such checkpoint directory', file=sys.stderr)
        return 2
    from tqdm import tqdm

    warning = seed_uses.check(args.seeds, 'evaluation')
    if warning:
        print(f'hapo evaluate-sim: warning: {warning}; report figures on evaluation seeds only', file=sys.stderr)
    try:
        graph_overrides(args.policy, args.overrides, args.config or config_dir() / 'deploy.yaml', args.operator)
        with tqdm(total=len(args.seeds), desc='evaluate-sim', unit='episode') as bar:
            result = evaluate_sim(args.policy, args.seeds, args.overrides, args.workers, args.config,
                                  args.stall_s, bar.update, args.operator, args.record)
    except (ParamError, EvaluationError) as exc:
        print(f'hapo evaluate-sim: {exc}', file=sys.stderr)
        return 2
    if result.get('interrupted'):
        print(f'hapo evaluate-sim: interrupted; keeping the {len(result["episodes"])} episodes that ended',
              file=sys.stderr)
    text = json.dumps(result, indent=2)
    if args.out:
        from hapo_policy.checkpoint import atomic_write_text

        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text + '\n')
    print(f'{result["success_rate"]:.1%} success on {len(result["episodes"])} seeds '
          f'(95 % CI {result["wilson95"][0]:.1%}-{result["wilson95"][1]:.1%}); '
          f'{result["steps_per_s"]} steps/s, {result["episodes_per_min"]} episodes/min'
          + (f'; intervention ratio {result["intervention_ratio"]:.1%}, takeovers {result["takeover_reasons"]}'
             if result['operator'] else ''), file=sys.stderr)
    if not args.out:
        print(text)
    return 130 if result.get('interrupted') else 0


if __name__ == '__main__':
    sys.exit(main())
