# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""policy_node as a real process over DDS: stamped actions, bad frames survive, bad checkpoint exits 2."""

from __future__ import annotations

import signal
import threading

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from helpers import RosProbe, wait_for
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String

from hapo_interfaces import topics
from hapo_interfaces.images import fill_image
from hapo_interfaces.records import read_action
from hapo_interfaces.stamps import to_ns
from hapo_policy.init_checkpoint import main as init_checkpoint

pytestmark = pytest.mark.graph

NODE = 'hapo_policy.policy_node'
START_S = 60.0  # torch + transformers import and model load on 2 busy cores
PARAMS = {'torch_threads': 1, 'diagnostics_period_s': 0.3}


class Probe(RosProbe):
    """Test-side node in its own Context, spun in a thread: publishes camera/joints, records policy output."""

    def __init__(self, domain: int):
        super().__init__(domain, 'policy_probe')
        self.__enter__()
        self.lock = threading.Lock()
        self.actions: list[JointState] = []
        self.entropies: list[JointState] = []
        self.uncertain: list[bool] = []
        self.diagnostics: list[dict[str, str]] = []
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        n = self.node
        n.create_subscription(JointState, topics.POLICY_ACTION, lambda m: self._add(self.actions, m), reliable)
        n.create_subscription(JointState, topics.POLICY_ENTROPY, lambda m: self._add(self.entropies, m), reliable)
        n.create_subscription(Bool, topics.POLICY_UNCERTAIN, lambda m: self._add(self.uncertain, m.data), 10)
        n.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self._on_diag, 10)
        self.image = n.create_publisher(Image, topics.camera_topic('agentview'), 10)
        self.joints = n.create_publisher(JointState, topics.JOINT_STATES, 10)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.instruction = n.create_publisher(String, topics.INSTRUCTION, latched)
        self.sent: list[int] = []

    def _add(self, target: list, item) -> None:
        with self.lock:
            target.append(item)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith('policy_node'):
                self._add(self.diagnostics, {kv.key: kv.value for kv in status.values})

    def send(self, stamp_ns: int, encoding: str = 'rgb8') -> None:
        js = JointState(name=[f'j{i}' for i in range(9)], position=[0.1] * 9)
        js.header.stamp.sec, js.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        self.joints.publish(js)
        msg = fill_image(Image(), np.full((128, 128, 3), stamp_ns % 251, np.uint8), stamp_ns, 'agentview')
        if encoding != 'rgb8':  # same bytes, declared as a type the node cannot use
            msg.encoding = encoding
            msg.step = 128 * (2 * 3 if encoding == 'bgr16' else 4)
            msg.data = bytes(128 * msg.step)
        else:
            self.sent.append(stamp_ns)
        self.image.publish(msg)

    def stamps(self, msgs: list[JointState]) -> list[int]:
        with self.lock:
            return [to_ns(m.header.stamp) for m in msgs]


@pytest.fixture
def probe(ros_domain):
    p = Probe(ros_domain)
    yield p
    p.close()


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp('policy') / 'ck'
    assert init_checkpoint(['--out', str(path), '--seed', '1']) == 0
    return path


def _send_until(probe: Probe, cond, timeout_s: float, what: str, encoding: str = 'rgb8') -> None:
    """Publish a frame every poll (new stamp each) until ``cond``; the node may still be starting."""
    counter = iter(range(1, 10**6))

    def step() -> bool:
        probe.send(1_000_000_000 + next(counter) * 50_000_000, encoding)
        return cond()

    wait_for(step, timeout_s, poll_s=0.1, what=what)


def test_actions_carry_the_image_stamp(start_node, probe, checkpoint):
    # a threshold every peak of the tiny model's entropy exceeds (hysteresis 0): the flag is up on every step
    node = start_node(NODE, params={**PARAMS, 'checkpoint': str(checkpoint), 'uncertain_threshold': 0.01,
                                    'uncertain_hysteresis': 0.0})
    probe.instruction.publish(String(data='lift the cube'))
    _send_until(probe, lambda: len(probe.actions) >= 3 and len(probe.entropies) >= 3 and len(probe.uncertain) >= 3,
                START_S, 'three actions')
    action_stamps, entropy_stamps = probe.stamps(probe.actions), probe.stamps(probe.entropies)
    assert set(action_stamps) <= set(probe.sent)  # every action answers a frame we sent, stamped with it
    assert set(action_stamps) & set(entropy_stamps)  # entropy carries the same stamp as its action
    with probe.lock:
        msg = probe.actions[-1]
        ent = probe.entropies[-1]
    assert msg.header.frame_id == 'policy' and len(read_action(msg)) == 7 and tuple(msg.name) == topics.ACTION_DIMS
    assert all(0.0 <= e <= np.log(256) + 1e-3 for e in ent.position)
    wait_for(lambda: probe.diagnostics and int(probe.diagnostics[-1]['inferences']) >= 3, 10.0, what='diagnostics')
    diag = probe.diagnostics[-1]
    assert int(diag['frames_received']) >= 3 and float(diag['latency_p50_ms']) > 0
    assert diag['checkpoint'] == str(checkpoint) and len(diag['policy_id']) == 16
    assert all(probe.uncertain) and int(diag['uncertain_steps']) >= 3  # hapo/policy/uncertain: the flag per step
    node.signal(signal.SIGTERM)
    assert node.wait(timeout_s=15) == 0, node.log()


@pytest.mark.parametrize('encoding', ['bgr16', '32FC1'])
def test_bad_encoding_warns_and_node_keeps_running(start_node, probe, checkpoint, encoding):
    node = start_node(NODE, params={**PARAMS, 'checkpoint': str(checkpoint)})
    _send_until(probe, lambda: f'encoding {encoding!r}' in node.log(), START_S, 'bad-frame warning', encoding)
    assert 'camera/agentview/image_raw' in node.log() and node.running()
    _send_until(probe, lambda: len(probe.actions) >= 1, 20.0, 'an action after the bad frames')
    wait_for(lambda: probe.diagnostics and int(probe.diagnostics[-1]['bad_frames']) >= 1, 10.0, what='bad_frames')
    assert 'Traceback' not in node.log()


def test_missing_checkpoint_exits_2_with_one_line(start_node, tmp_path):
    node = start_node(NODE, params={'checkpoint': str(tmp_path / 'nowhere')})
    assert node.wait(timeout_s=START_S) == 2
    log = node.log()
    lines = [line for line in log.splitlines() if 'cannot load checkpoint' in line]
    assert len(lines) == 1 and lines[0].endswith(f'policy_node: cannot load checkpoint {tmp_path / "nowhere"}: '
                                                 'no such directory'), log
    assert 'Traceback' not in log


def test_serves_an_openvla_layout_checkpoint(start_node, probe, tmp_path):
    """A transformers VLA laid out like OpenVLA as downloaded (norm_stats in config.json, gripper unmasked, no
    action_stats.json) is served by the same node: actions stamped, the gripper a raw bin centre."""
    from foreign_vla import CAMERA, as_openvla, write_foreign_checkpoint

    from hapo_policy.normalization import ActionStats

    stats = ActionStats(np.full(7, -0.5), np.full(7, 0.5))
    norm = {'q01': stats.q01.tolist(), 'q99': stats.q99.tolist(), 'mask': [True] * 6 + [False]}
    path = as_openvla(write_foreign_checkpoint(tmp_path / 'openvla', stats), {'sim_lift': norm})
    node = start_node(NODE, params={**PARAMS, 'checkpoint': str(path), 'camera_names': CAMERA})
    _send_until(probe, lambda: len(probe.actions) >= 2, START_S, 'two actions from the foreign checkpoint')
    assert set(probe.stamps(probe.actions)) <= set(probe.sent)
    with probe.lock:
        action = read_action(probe.actions[-1])
    assert all(-0.5 <= a <= 0.5 for a in action[:6]) and -1.0 < action[6] < 1.0, action
    node.signal(signal.SIGTERM)
    assert node.wait(timeout_s=15) == 0, node.log()


def test_fresh_model_sees_the_cameras_named(start_node, probe, checkpoint):
    """No checkpoint: the fresh model takes camera_names' cameras (what a scenario sets); a checkpoint keeps its own."""
    node = start_node(NODE, params={**PARAMS, 'camera_names': 'agentview,robot0_eye_in_hand'})
    wrist = topics.camera_topic('robot0_eye_in_hand')
    wait_for(lambda: probe.node.count_subscribers(wrist) >= 1 and probe.node.count_subscribers(
        topics.camera_topic('agentview')) >= 1, START_S, what='subscriptions to both cameras')
    assert node.running()
    bad = start_node(NODE, params={**PARAMS, 'checkpoint': str(checkpoint), 'camera_names': 'a,b'}, name='bad')
    assert bad.wait(timeout_s=START_S) == 2
    assert "camera_names=['a', 'b'] must name 1 cameras (model has ['agentview'])" in bad.log()
