# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The deploy graph (sim, policy, mux, recorder) as separate processes over DDS, started by the `hapo` runner.

A test-side joystick holds the deadman mid-episode and releases it: the executed steps switch
source and back, the arm moves under the human's command, a hold follows the release, and
SIGINT stops every node within a few seconds. The recorded episode then holds exactly those steps,
tagged, with the running policy as provenance, and `optimize` trains on it.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers import RosProbe, wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState, Joy

from hapo_bringup.graph import config_dir, resolve
from hapo_bringup.runner import GraphRunner
from hapo_interfaces import topics
from hapo_interfaces.enums import ControlSource as S
from hapo_interfaces.enums import Label
from hapo_interfaces.records import read_step
from hapo_policy.model import VlaPolicy
from hapo_recorder.bag_reader import list_episodes, read_episode
from hapo_recorder.relabel import relabel

pytestmark = pytest.mark.graph


def _eef_z(msg: JointState) -> float:
    return float(msg.position[list(msg.name).index('eef_pos.z')])


def test_joystick_takeover_and_handback(ros_domain, tmp_path):
    base = tmp_path / 'base'
    subprocess.run([sys.executable, '-m', 'hapo_policy.init_checkpoint', '--out', str(base)], check=True,
                   capture_output=True, timeout=120)
    nodes, params = resolve(config_dir() / 'deploy.yaml', ['horizon:=100000', 'image_size:=64',
                                                           f'output_root:={tmp_path / "episodes"}',
                                                           f'checkpoint:={base}'])
    out = io.StringIO()
    runner = GraphRunner(nodes, params, out=out, env={'ROS_DOMAIN_ID': str(ros_domain)})
    with RosProbe(ros_domain) as probe:
        cmds = probe.collect(JointState, topics.CMD, QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
        states = probe.collect(JointState, topics.OBJECT_STATE, 100)
        joy_pub = probe.node.create_publisher(Joy, topics.JOY, 10)
        joy = {'deadman': 0, 'z': 0.0}
        stop = threading.Event()

        def joystick():  # a gamepad driver publishes at a fixed rate, pressed or not
            while not stop.is_set():
                buttons = [0] * 11
                buttons[4] = joy['deadman']
                axes = [0.0] * 8
                axes[4] = joy['z']
                joy_pub.publish(Joy(axes=axes, buttons=buttons))
                time.sleep(0.02)

        runner.start()
        threading.Thread(target=joystick, daemon=True).start()
        try:
            steps = lambda: [read_step(m) for m in list(cmds)]  # noqa: E731
            count = lambda src: sum(s.source is src for s in steps())  # noqa: E731
            wait_for(lambda: count(S.POLICY) >= 10, 90, what=f'10 policy steps; graph output:\n{out.getvalue()}')

            joy.update(deadman=1, z=1.0)  # take over: move up
            wait_for(lambda: count(S.HUMAN) >= 15, 30, what='15 human steps')
            z_at_takeover = _eef_z(states[-1])
            wait_for(lambda: count(S.HUMAN) >= 30, 30, what='30 human steps')
            assert _eef_z(states[-1]) > z_at_takeover + 0.02, 'the arm did not rise under the human command'

            joy.update(deadman=0, z=0.0)  # hand back
            n_before = len(cmds)
            wait_for(lambda: sum(s.source is S.POLICY for s in steps()[n_before:]) >= 5, 30,
                     what='policy steps after hand-back')
        finally:
            stop.set()
            t0 = time.monotonic()
            codes = runner.stop()
            stop_s = time.monotonic() - t0

    seq = [s.source for s in steps()]
    first_human = seq.index(S.HUMAN)
    last_human = len(seq) - 1 - seq[::-1].index(S.HUMAN)
    assert S.POLICY in seq[:first_human]
    assert set(seq[first_human:last_human + 1]) == {S.HUMAN}, 'the takeover was not one contiguous intervention'
    after = steps()[last_human + 1]
    assert after.source is S.NONE and np.allclose(after.action[:6], 0.0), 'no hold right after the release'
    assert S.POLICY in seq[last_human + 1:]
    human_stamps = [s.stamp_ns for s in steps() if s.source is S.HUMAN]
    assert len(set(human_stamps)) == len(human_stamps), 'lockstep: one human command per observation'
    assert codes == {n.name: 0 for n in nodes}, f'exit codes {codes}\n{out.getvalue()}'
    assert stop_s < 6.0, f'graph took {stop_s:.1f} s to stop'

    # Recording is on by default: the episode closed as aborted on SIGINT, every executed step tagged.
    (bag,) = list_episodes([tmp_path / 'episodes'])
    ep = read_episode(bag, decode_images=False)
    assert ep.outcome == 'aborted' and not ep.truncated
    assert ep.metadata['control_rate_hz'] == 20.0  # the sim's, from its START (export-lerobot's fps)
    assert ep.policy_id == VlaPolicy.from_pretrained(base).policy_id, 'the running policy is not the provenance'
    recorded = [S(v) for v in ep.sources]
    as_text = lambda xs: ''.join(str(int(x)) for x in xs).lstrip('0')  # noqa: E731 (holds before the policy came up)
    assert as_text(recorded) in as_text(seq), 'the bag does not hold a contiguous run of the executed steps'
    assert S.HUMAN in recorded
    assert list(ep.labels) == list(relabel(ep.sources, ep.k))
    assert (ep.labels == Label.CORRECTION).sum() == seq.count(S.HUMAN)
    assert (ep.labels == Label.UNDESIRABLE).sum() == min(ep.k, recorded[:recorded.index(S.HUMAN)].count(S.POLICY))
    # Every executed policy step is a recorded proposal; the policy keeps proposing while the human drives
    # (on the newest frame, so a loaded machine may skip some observations then).
    proposed = set(ep.proposal_stamps_ns.tolist())
    policy_stamps = ep.step_stamps_ns[ep.sources == S.POLICY.value].tolist()
    missing = [i for i, t in enumerate(ep.step_stamps_ns.tolist()) if t in set(policy_stamps) - proposed]
    assert not missing, f'executed policy steps {missing} of {len(recorded)} have no recorded proposal: {ep.metadata}'
    human_stamps = ep.step_stamps_ns[ep.sources == S.HUMAN.value].tolist()
    assert proposed.intersection(human_stamps), 'no policy proposal was recorded while the human drove'

    # The recording trains: the trainer reads the bag without ROS and writes a checkpoint the node loads.
    proc = subprocess.run([sys.executable, '-m', 'hapo_trainer.optimize', '--bags', str(tmp_path / 'episodes'),
                           '--policy', str(base), '--out', str(tmp_path / 'run'), '--steps', '2', '--no-progress'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert VlaPolicy.from_pretrained(tmp_path / 'run' / 'policy').policy_id != ep.policy_id
    assert (tmp_path / 'run' / 'metrics.png').is_file(), proc.stderr[-2000:]
