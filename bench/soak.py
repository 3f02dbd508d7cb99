# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Soak (issue 14; a bench, not in CI): the deploy graph with the simulated operator at full rate for a long time.

    .venv/bin/python bench/soak.py [--minutes 30] [--sample-s 10] [--warmup-s 120] [--policy config/policies/lift_base]

One graph as ``hapo evaluate-sim --operator`` runs it (lockstep sim on ``lift_far``, the shipped base, mux, the
simulated operator, and the recorder writing every episode), episodes back to back. Every ``--sample-s``: the
resident memory of each node process (VmRSS) and the executed steps per second. Every closed bag is read back
(its driven steps against the sim's count in its end event, its dropped messages) and deleted, so the disk stays
small. Reported: per node the memory after the warm-up, at the end and its peak, and the growth (the median of the
last quarter of the samples after the warm-up minus that of the first quarter, and a least-squares slope in MB/h);
the rate per sample (median, min, coefficient of variation); episodes, steps lost, messages dropped.
Goal: no node grows by more than ``--growth-mb`` (default 10 MB) and ``--growth-pct`` (5 %) together, 0 steps lost,
0 drops, no node exits; exits 1 otherwise. Prints one JSON object; ``--out FILE`` also writes it.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, isolate, report
from helpers import RosProbe, wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from hapo_bringup.evaluate_sim import BASE_OVERRIDES
from hapo_bringup.graph import config_dir, resolve
from hapo_bringup.runner import GraphRunner
from hapo_interfaces import topics
from hapo_interfaces.enums import ControlSource as S
from hapo_interfaces.records import decode_event, read_step
from hapo_recorder.bag_reader import BagError, list_episodes, read_metadata

RELIABLE = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)


def rss_mb(pid: int) -> float | None:
    """Resident memory of one process (None once it is gone)."""
    try:
        for line in Path(f'/proc/{pid}/status').read_text().splitlines():
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Wire:
    """Executed driving steps and the sim's end events (their step counts by START stamp)."""

    def __init__(self, probe: RosProbe):
        self.steps = 0
        self.start_ns: int | None = None
        self.executed: dict[int, int] = {}  # START stamp -> the sim's driven steps in its end event
        probe.node.create_subscription(JointState, topics.CMD, self._on_cmd, RELIABLE)
        probe.node.create_subscription(String, topics.EPISODE, self._on_event, RELIABLE)

    def _on_cmd(self, msg) -> None:
        self.steps += read_step(msg).source in (S.POLICY, S.HUMAN)

    def _on_event(self, msg) -> None:
        event = decode_event(msg.data)
        if event.origin != 'sim':
            return
        if event.event.name == 'START':
            self.start_ns = event.stamp_ns
        elif event.event.terminal and self.start_ns is not None and isinstance(event.extra.get('steps'), int):
            self.executed[self.start_ns] = event.extra['steps']


def growth(samples: list[float], limit_mb: float, limit_pct: float) -> dict:
    q = max(1, len(samples) // 4)
    first, last = statistics.median(samples[:q]), statistics.median(samples[-q:])
    index = np.arange(len(samples), dtype=float)
    slope = float(np.polyfit(index, samples, 1)[0]) if len(samples) > 2 else 0.0  # MB per sample
    grew = last - first > limit_mb and last - first > limit_pct / 100 * first
    return {'after_warmup_mb': round(samples[0], 1), 'end_mb': round(samples[-1], 1), 'peak_mb': round(max(samples), 1),
            'growth_mb': round(last - first, 1), 'slope': slope, 'grows': bool(grew)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--minutes', type=float, default=30.0, help='how long the graph runs (default %(default)s)')
    ap.add_argument('--sample-s', type=float, default=10.0, help='sampling period (default %(default)s)')
    ap.add_argument('--warmup-s', type=float, default=120.0, help='samples before this are not judged')
    ap.add_argument('--policy', type=Path, default=ROOT / 'config/policies/lift_base')
    ap.add_argument('--scenario', default='lift_far')
    ap.add_argument('--growth-mb', type=float, default=10.0)
    ap.add_argument('--growth-pct', type=float, default=5.0)
    ap.add_argument('--out', type=Path, default=None, help='also write the JSON object here')
    args = ap.parse_args()
    if args.warmup_s >= args.minutes * 60:
        ap.error(f'--warmup-s {args.warmup_s} must be shorter than the run ({args.minutes * 60:.0f} s)')
    domain = isolate()
    tmp = Path(tempfile.mkdtemp(prefix='hapo-soak-'))
    nodes, params = resolve(config_dir() / 'deploy.yaml', [
        *BASE_OVERRIDES, 'record:=true', f'output_root:={tmp / "episodes"}', f'checkpoint:={args.policy}',
        'operator:=true', f'scenario:={args.scenario}', 'max_episodes:=0'])
    out = io.StringIO()
    runner = GraphRunner(nodes, params, out=out, env={'ROS_DOMAIN_ID': str(domain)})
    names = [n.name for n in nodes]
    samples: list[dict] = []
    episodes = {'closed': 0, 'steps_in_bags': 0, 'steps_executed': 0, 'steps_lost': 0, 'dropped': 0}
    exited, interrupted = None, False
    with RosProbe(domain, 'bench_soak') as probe:
        wire = Wire(probe)
        runner.start()
        try:
            wait_for(lambda: wire.steps > 20, 180, what=f'the graph to drive; output:\n{out.getvalue()[-3000:]}')
            t0 = time.monotonic()
            last_steps, last_t = wire.steps, t0
            while time.monotonic() - t0 < args.minutes * 60:
                time.sleep(args.sample_s)
                exited = runner.exited()
                if exited:
                    break
                now = time.monotonic()
                rss = {n: rss_mb(runner.procs[n].pid) for n in names}
                samples.append({'t_s': round(now - t0, 1), 'rss_mb': rss,
                                'steps_per_s': round((wire.steps - last_steps) / (now - last_t), 2)})
                last_steps, last_t = wire.steps, now
                for bag in list_episodes([tmp / 'episodes']) if (tmp / 'episodes').exists() else []:
                    try:
                        meta = read_metadata(bag)
                    except BagError:
                        continue
                    if meta is None or meta.get('start_ns') not in wire.executed:
                        continue  # open, or its end event not heard yet
                    executed = wire.executed.pop(meta['start_ns'])
                    episodes['closed'] += 1
                    episodes['steps_in_bags'] += meta['driven_steps']
                    episodes['steps_executed'] += executed
                    episodes['steps_lost'] += max(0, executed - meta['driven_steps'])
                    episodes['dropped'] += int(meta.get('dropped_total', 0))
                    shutil.rmtree(bag)
                print(f'soak: {samples[-1]["t_s"]:.0f} s, {samples[-1]["steps_per_s"]} steps/s, '
                      f'{episodes["closed"]} episodes, rss {json.dumps(samples[-1]["rss_mb"])}', file=sys.stderr)
        except KeyboardInterrupt:
            interrupted = True  # report what was measured
        finally:
            runner.stop()
    judged = [s for s in samples if s['t_s'] >= args.warmup_s]
    memory = {}
    for n in names:
        series = [s['rss_mb'][n] for s in judged if s['rss_mb'][n] is not None]
        if len(series) >= 2:
            g = growth(series, args.growth_mb, args.growth_pct)
            g['slope_mb_per_h'] = round(g.pop('slope') * 3600 / args.sample_s, 1)
            memory[n] = g
    rates = [s['steps_per_s'] for s in judged]
    policy = args.policy.resolve()
    policy = policy.relative_to(ROOT) if policy.is_relative_to(ROOT) else policy
    result = {'bench': 'soak', 'minutes': args.minutes, 'scenario': args.scenario, 'policy': str(policy),
              'samples': len(samples), 'judged_samples': len(judged), 'memory': memory,
              'rate_steps_per_s': {'median': statistics.median(rates), 'min': min(rates),
                                   'cv': round(statistics.pstdev(rates) / statistics.mean(rates), 3)} if rates else {},
              'episodes': episodes, 'exited': exited, 'series': samples,
              **({'interrupted': True} if interrupted else {})}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + '\n')
    report(result)
    shutil.rmtree(tmp, ignore_errors=True)
    failed = [f'{n} grows {m["growth_mb"]} MB' for n, m in memory.items() if m['grows']]
    failed += [f'{episodes[k]} {k.replace("_", " ")}' for k in ('steps_lost', 'dropped') if episodes[k]]
    failed += [exited] if exited else []
    failed += [] if judged else ['no sample after the warm-up']
    failed += ['interrupted'] if interrupted else []
    if failed:
        print(f'soak: goal missed: {"; ".join(failed)}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
