# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""servo_executor: how soon after the last command a zero twist reaches Servo, and the twist stream's rate.

    .venv/bin/python bench/bench_servo.py [--trials 20] [--quick]

A real subscriber (this process) takes the twists; a real publisher sends hapo/cmd (human commands: no
episode needed) at 50 Hz (the mux's tick) for 0.4 s, then stops. Per trial: from the last command sent to
the first zero twist received, less ``cmd_timeout_s`` (0.1 s): the time the watchdog takes once the command
is stale. Goal: within one executor period (1 / rate_hz = 20 ms). Baseline in the same run: a TwistStamped
from one node of this process to another (DDS alone). Correctness first: the twists while commands flow are
the scaled command.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import hop, isolate, pct_ms, report
from geometry_msgs.msg import TwistStamped
from helpers import NodeProcess, RosProbe, wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from hapo_interfaces import topics
from hapo_interfaces.enums import ControlSource
from hapo_interfaces.records import ExecutedStep, fill_step
from hapo_interfaces.stamps import fill

RATE_HZ, TIMEOUT_S, MAX_LIN = 50.0, 0.1, 0.1


def twist_hop(probe: RosProbe, n: int = 200) -> list[float]:
    def make(stamp: int) -> TwistStamped:
        msg = TwistStamped()
        fill(msg.header.stamp, stamp)
        return msg
    return hop(probe, TwistStamped, make, n, 0.005)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--trials', type=int, default=20)
    ap.add_argument('--quick', action='store_true', help='3 trials (CI smoke)')
    args = ap.parse_args()
    trials = 3 if args.quick else args.trials
    domain = isolate()
    with tempfile.TemporaryDirectory() as tmp, RosProbe(domain, 'bench_servo') as probe:
        hop = twist_hop(probe)
        node = NodeProcess('hapo_teleop.servo_executor_node', [], {
            'twist_topic': 'bench/servo', 'rate_hz': RATE_HZ, 'cmd_timeout_s': TIMEOUT_S, 'max_linear_m_s': MAX_LIN,
            'gripper_mode': 'none'}, log_dir=Path(tmp), name='servo', env={'ROS_DOMAIN_ID': str(domain)})
        twists: list[tuple[float, float]] = []  # (arrival, linear.x)
        probe.node.create_subscription(TwistStamped, 'bench/servo', lambda m: twists.append(
            (time.monotonic(), m.twist.linear.x)), 10)
        cmd = probe.node.create_publisher(JointState, topics.CMD, QoSProfile(depth=100,
                                                                             reliability=ReliabilityPolicy.RELIABLE))
        try:
            wait_for(lambda: len(twists) > 5 and cmd.get_subscription_count() > 0, 30, what=f'twists\n{node.log()}')
            to_zero, wrong = [], 0
            for _ in range(trials):
                for _ in range(20):
                    cmd.publish(fill_step(JointState(), ExecutedStep(time.time_ns(), (0.5,) + (0.0,) * 6,
                                                                     ControlSource.HUMAN)))
                    last = time.monotonic()  # the last command's send time
                    time.sleep(1 / 50)
                wait_for(lambda t=last: any(a > t and x == 0.0 for a, x in list(twists)), 2, what='a zero twist')
                moving = [x for a, x in list(twists) if last - 0.2 < a < last]
                wrong += sum(abs(x - 0.5 * MAX_LIN) > 1e-9 for x in moving)
                first_zero = next(a for a, x in list(twists) if a > last and x == 0.0)
                to_zero.append(first_zero - last - TIMEOUT_S)
                time.sleep(0.2)
            n0, t0 = len(twists), time.monotonic()
            time.sleep(2.0 if args.quick else 5.0)
            rate = (len(twists) - n0) / (time.monotonic() - t0)
        finally:
            node.stop()
    if wrong:
        print(f'correctness check failed: {wrong} twists while moving were not the scaled command', file=sys.stderr)
        return 1
    r = {'bench': 'servo', 'rate_hz_asked': RATE_HZ, 'rate_hz': round(rate, 2), 'cmd_timeout_s': TIMEOUT_S,
         'stale_to_zero_after_timeout': pct_ms(to_zero), 'baseline_twist_hop': pct_ms(hop),
         'period_ms': round(1e3 / RATE_HZ, 1)}
    r['goal_zero_within_one_period'] = r['stale_to_zero_after_timeout'].get('max_ms', 1e9) <= r['period_ms'] + \
        r['baseline_twist_hop'].get('p99_ms', 0)
    report(r)
    return 0


if __name__ == '__main__':
    sys.exit(main())
