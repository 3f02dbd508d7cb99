# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Closed-loop rate and image-stamp -> hapo/cmd latency of the real deploy graph (lockstep sim).

    .venv/bin/python bench/bench_loop.py [--seconds 30] [--image-size 128] [--quick]

Starts sim_node, policy_node (a fresh model: checkpoint:=) and mux_node with `hapo deploy`'s resolver and
runner, lets them warm up, then measures for ``--seconds``: policy steps per second and, per
step, the time from the observation's stamp (taken when the sim published the image) to the
command's arrival at a subscriber. Baseline in the same run: one 128 px image hop between two
nodes over DDS. Correctness first: every policy command must carry a stamp the sim published.
Goals: >= 20 Hz and p99 <= 60 ms on 2 cores. ``--view``: then the same graph with ``view:=true`` and a Foxglove
WebSocket client subscribed to every channel (images at the view's 5 Hz JPEG): goal <= 10 % lower rate.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time

import numpy as np
from _common import hop, isolate, pct_ms, report
from foxglove_client import ClientThread, free_port
from helpers import RosProbe, wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState

from hapo_bringup.graph import config_dir, resolve
from hapo_bringup.runner import GraphRunner
from hapo_interfaces import topics
from hapo_interfaces.enums import ControlSource
from hapo_interfaces.images import fill_image
from hapo_interfaces.records import read_step
from hapo_interfaces.stamps import to_ns


def image_hop(probe: RosProbe, size: int, n: int = 200, width: int | None = None) -> list[float]:
    """Baseline: n images (size x size, or size x width) from one node of this process to another."""
    img = np.random.default_rng(0).integers(0, 255, (size, width or size, 3), dtype=np.uint8)
    return hop(probe, Image, lambda stamp: fill_image(Image(), img, stamp), n, 0.01, qos_profile_sensor_data)


def run_graph(args, seconds: float, domain: int, probe: RosProbe, view_port: int | None) -> dict:
    """One graph for ``seconds`` after warm-up: the policy commands that arrived, and what a view client got."""
    view = ['view:=true', f'view_node.port:={view_port}'] if view_port else []
    # checkpoint:= (a fresh model of the requested image size), not deploy.yaml's shipped 64 px base: the same graph
    # as the earlier runs of this bench, so its figures stay comparable
    nodes, params = resolve(config_dir() / 'deploy.yaml', ['horizon:=100000', f'image_size:={args.image_size}',
                                                           'record:=false', 'checkpoint:=', *view])
    out = io.StringIO()
    runner = GraphRunner(nodes, params, out=out, env={'ROS_DOMAIN_ID': str(domain)})
    arrivals: list[tuple[int, object]] = []
    sub = probe.node.create_subscription(JointState, topics.CMD, lambda m: arrivals.append((time.time_ns(), m)),
                                         QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    runner.start()
    try:
        policy_steps = lambda: sum(m.header.frame_id == 'policy' for _, m in list(arrivals))  # noqa: E731
        wait_for(lambda: policy_steps() > 20, 120, what=f'the policy to drive; output:\n{out.getvalue()}')
        with ClientThread(view_port) if view_port else contextlib.nullcontext() as client:
            if client is not None:  # subscribed to every channel, images included, before the measurement
                wait_for(lambda: client.received(f'/{topics.camera_topic("agentview")}'), 30,
                         what=f'the view to send an image; output:\n{out.getvalue()}')
            time.sleep(args.warmup_s)
            start, t0 = len(arrivals), time.monotonic()
            images0 = len(client.received(f'/{topics.camera_topic("agentview")}')) if client else 0
            time.sleep(seconds)
            window, elapsed = arrivals[start:], time.monotonic() - t0
            images = len(client.received(f'/{topics.camera_topic("agentview")}')) - images0 if client else 0
            messages = sum(len(v) for v in client.data.values()) if client else 0
    finally:
        runner.stop()
        probe.node.destroy_subscription(sub)
    return {'window': window, 'elapsed': elapsed, 'out': out, 'view_images': images, 'view_messages': messages}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--seconds', type=float, default=30.0)
    ap.add_argument('--warmup-s', type=float, default=5.0)
    ap.add_argument('--image-size', type=int, default=128)
    ap.add_argument('--view', action='store_true', help='then the same graph with view:=true and a Foxglove client '
                    'subscribed to every channel: the rate it costs (goal: <= 10 %% lower)')
    ap.add_argument('--quick', action='store_true', help='8 s measurement (CI smoke)')
    args = ap.parse_args()
    seconds = 8.0 if args.quick else args.seconds
    domain = isolate()
    with RosProbe(domain, 'bench_loop') as probe:
        hop = image_hop(probe, args.image_size)
        obs_stamps: set[int] = set()
        probe.node.create_subscription(JointState, topics.JOINT_STATES, lambda m: obs_stamps.add(
            to_ns(m.header.stamp)), QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        plain = run_graph(args, seconds, domain, probe, None)
        viewed = run_graph(args, seconds, domain, probe, free_port()) if args.view else None
    steps = [(t, read_step(m)) for t, m in plain['window']]
    policy = [(t, s) for t, s in steps if s.source is ControlSource.POLICY]
    unknown = [s for _, s in policy if s.stamp_ns not in obs_stamps]
    if not policy or len(unknown) > 1:  # the last one may race the joint-state sample
        print(f'correctness check failed: {len(unknown)} of {len(policy)} commands answer no published '
              f'observation\n{plain["out"].getvalue()}', file=sys.stderr)
        return 1
    latency = [(t - s.stamp_ns) / 1e9 for t, s in policy]
    elapsed = plain['elapsed']
    r = {'bench': 'loop', 'image_size': args.image_size, 'cameras': 1, 'seconds': round(elapsed, 2),
         'rate_hz': round(len(policy) / elapsed, 2), 'non_policy_steps': len(steps) - len(policy),
         'stamp_to_cmd': pct_ms(latency), 'baseline_image_hop': pct_ms(hop)}
    r['ratio_p99_loop_over_image_hop'] = round(r['stamp_to_cmd']['p99_ms'] / r['baseline_image_hop']['p99_ms'], 2)
    r['goal_rate_ge_20hz'] = r['rate_hz'] >= 20.0
    r['goal_p99_le_60ms'] = r['stamp_to_cmd']['p99_ms'] <= 60.0
    if viewed is not None:
        rate = sum(read_step(m).source is ControlSource.POLICY for _, m in viewed['window']) / viewed['elapsed']
        r['view'] = {'rate_hz': round(rate, 2), 'images_per_s': round(viewed['view_images'] / viewed['elapsed'], 2),
                     'messages': viewed['view_messages'], 'rate_ratio_view_over_plain': round(rate / r['rate_hz'], 3)}
        r['goal_view_rate_loss_le_10pct'] = r['view']['rate_ratio_view_over_plain'] >= 0.9
        if not viewed['view_images']:
            print('correctness check failed: the view client received no image', file=sys.stderr)
            return 1
    report(r)
    return 0


if __name__ == '__main__':
    sys.exit(main())
