# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Latency the mux adds: policy action in -> hapo/cmd out, against a plain relay node in the same run.

    .venv/bin/python bench/bench_mux.py [--n 2000] [--rate-hz 100] [--quick]

Both paths are probe -> other process -> probe over DDS with the same QoS; the relay only
republishes, so ``overhead_p99_ms = mux p99 - relay p99`` is what the mux logic costs. A direct
probe -> probe hop is reported for reference. Correctness first: every action must come back
unchanged with its stamp and source 'policy' (exit 1 otherwise). Goal: overhead p99 <= 1 ms.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from _common import ROOT, isolate, pct_ms, report
from helpers import NodeProcess, RosProbe, wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from hapo_interfaces import topics
from hapo_interfaces.records import fill_action

QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def measure(probe: RosProbe, out_topic: str, in_topic: str, n: int, rate_hz: float, warmup: int,
            stamp0: int) -> tuple[list[float], int]:
    """Publish n actions on out_topic; return per-message latency (s) of those echoed on in_topic."""
    sent: dict[int, float] = {}
    lat: list[float] = []
    bad = []

    def on_msg(msg):
        now = time.perf_counter()
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if stamp in sent:
            if msg.header.frame_id not in ('', 'policy') or list(msg.position)[:3] != [0.1, -0.2, 0.3]:
                bad.append(msg)
            lat.append(now - sent.pop(stamp))

    sub = probe.node.create_subscription(JointState, in_topic, on_msg, QOS)
    pub = probe.node.create_publisher(JointState, out_topic, QOS)
    wait_for(lambda: pub.get_subscription_count() > 0 and sub.get_publisher_count() > 0, 20, what=out_topic)
    time.sleep(0.5)
    period = 1.0 / rate_hz
    for i in range(n + warmup):
        stamp = stamp0 + i
        msg = fill_action(JointState(), stamp, (0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 1.0), 'policy')
        sent[stamp] = time.perf_counter()
        pub.publish(msg)
        time.sleep(period)
    wait_for(lambda: not sent, 5, what='all echoes')
    probe.node.destroy_subscription(sub)
    probe.node.destroy_publisher(pub)
    return lat[warmup:], len(bad)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=2000)
    ap.add_argument('--rate-hz', type=float, default=100.0)
    ap.add_argument('--quick', action='store_true', help='300 messages (CI smoke)')
    args = ap.parse_args()
    n = 300 if args.quick else args.n
    domain = isolate()
    log_dir = tempfile.mkdtemp(prefix='bench-mux-')
    env = {'ROS_DOMAIN_ID': str(domain)}
    # A long policy timeout: the bench paces actions itself; lockstep off (no sim).
    mux = NodeProcess('hapo_teleop.mux_node', [], {'policy_timeout_s': 5.0}, log_dir, env=env)
    relay = NodeProcess('_relay', [], {}, log_dir, env=dict(env, PYTHONPATH=str(ROOT / 'bench')))
    try:
        with RosProbe(domain, 'bench_mux') as probe:
            base = time.time_ns()
            direct, _ = measure(probe, 'bench/direct', 'bench/direct', n, args.rate_hz, 50, base)
            relayed, bad_r = measure(probe, 'bench/relay_in', 'bench/relay_out', n, args.rate_hz, 50,
                                     base + 10**7)
            muxed, bad_m = measure(probe, topics.POLICY_ACTION, topics.CMD, n, args.rate_hz, 50, base + 2 * 10**7)
    finally:
        mux.stop()
        relay.stop()
    if bad_m or bad_r or len(muxed) < n * 0.99:
        print(f'correctness check failed: {bad_m} altered by mux, {bad_r} by relay, {len(muxed)}/{n} echoed',
              file=sys.stderr)
        return 1
    r = {'bench': 'mux', 'n': n, 'rate_hz': args.rate_hz, 'direct_hop': pct_ms(direct),
         'relay_path': pct_ms(relayed), 'mux_path': pct_ms(muxed)}
    r['overhead_p50_ms'] = round(r['mux_path']['p50_ms'] - r['relay_path']['p50_ms'], 3)
    r['overhead_p99_ms'] = round(r['mux_path']['p99_ms'] - r['relay_path']['p99_ms'], 3)
    r['ratio_p99_mux_over_relay'] = round(r['mux_path']['p99_ms'] / r['relay_path']['p99_ms'], 3)
    r['goal_overhead_p99_le_1ms'] = r['overhead_p99_ms'] <= 1.0
    report(r)
    return 0


if __name__ == '__main__':
    sys.exit(main())
