# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""recorder_node: raw subscriptions -> Recorder (queue + writer thread) -> one tagged MCAP bag per episode.

    python -m hapo_recorder.recorder_node --ros-args -p output_root:=runs/episodes -p k:=10
    ros2 run hapo_recorder recorder_node --ros-args --params-file config/deploy.yaml

Subscribes (raw, never deserialised in the callback): hapo/episode, hapo/cmd, hapo/instruction,
hapo/policy/action, hapo/policy/entropy, robot/joint_states, camera/<name>/image_raw per ``cameras``, and
``extra_topics``. Publishes /diagnostics. SIGINT/SIGTERM closes the open episode as 'aborted'.
"""

from __future__ import annotations

import importlib
import sys

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from hapo_interfaces import topics as tp
from hapo_recorder.bag_writer import typestore
from hapo_recorder.params import RecorderParams
from hapo_recorder.recorder import Recorder, TopicSpec
from hapo_ros.diagnostics import OK, WARN, diagnostic_array, diagnostic_status
from hapo_ros.main import run_node
from hapo_ros.parameters import declare
from hapo_ros.qos import EXECUTED, LATCHED

# Events, steps and policy actions: reliable, deep enough for a burst while the executor is busy.
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
# Sensors: best effort matches both best-effort (sensor data QoS) and reliable publishers.
SENSOR = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
# Instruction: LATCHED (transient local), so the one sent before the recorder started still arrives.
# Executed steps: EXECUTED (transient local, the mux's history), so steps sent before a match are not lost.
JS, IMG, STR = 'sensor_msgs/msg/JointState', 'sensor_msgs/msg/Image', 'std_msgs/msg/String'


class RecorderNode(Node):
    # After SIGINT/SIGTERM keep taking delivered messages this long: the executor takes ready subscriptions in
    # creation order, so a step's command can be taken and its policy proposal still be waiting.
    drain_s = 0.3

    def __init__(self, **kwargs):
        super().__init__('recorder_node', **kwargs)  # = config/deploy.yaml key
        self.params = declare(self, RecorderParams)
        self.store = typestore()
        wanted = [(tp.EPISODE, STR, 'episode', RELIABLE), (tp.CMD, JS, 'cmd', EXECUTED),  # episode first (episode.py)
                  (tp.EPISODE_LATEST, STR, 'episode_latest', LATCHED),  # a restart resumes the running episode
                  (tp.INSTRUCTION, STR, 'instruction', LATCHED), (tp.POLICY_ACTION, JS, 'policy_action', RELIABLE),
                  (tp.POLICY_ENTROPY, JS, 'entropy', SENSOR), (tp.JOINT_STATES, JS, 'joint_states', SENSOR)]
        wanted += [(tp.camera_topic(c), IMG, f'camera:{c}', SENSOR) for c in self.params.cameras]
        for entry in filter(None, self.params.extra_topics):
            name, _, msgtype = entry.partition('=')
            wanted.append((name.strip(), msgtype.strip(), 'extra', SENSOR))
        specs, classes = [], {}
        for name, msgtype, role, qos in wanted:
            cls = self._message_class(name, msgtype)
            if cls is not None:
                specs.append(TopicSpec(self.resolve_topic_name(name), msgtype, role))
                classes[specs[-1].topic] = (cls, qos)
        self.recorder = Recorder(specs, self.params, self._log)
        self.warned: set = set()
        for spec in specs:
            cls, qos = classes[spec.topic]
            events = SubscriptionEventCallbacks(
                incompatible_qos=lambda info, t=spec.topic: self._warn_once(
                    t, f'{t}: a publisher has incompatible QoS (policy {info.last_policy_kind}); not recorded'),
                incompatible_type=lambda _info, t=spec.topic, m=spec.msgtype: self._warn_once(
                    t + 'type', f'{t}: a publisher uses another message type than {m}; not recorded'))
            self.create_subscription(cls, spec.topic, lambda raw, t=spec.topic: self.recorder.offer(t, raw),
                                     qos, raw=True, event_callbacks=events)
        self.create_subscription(String, tp.POLICY_ID, self._on_policy_id, LATCHED)
        self.diag_pub = self.create_publisher(DiagnosticArray, tp.DIAGNOSTICS, 10)
        if self.params.diagnostics_period_s > 0:
            self.create_timer(self.params.diagnostics_period_s, self._diagnostics)
        self.recorder.start()
        self.get_logger().info(f'recording {len(specs)} topics to {self.params.output_root} (k={self.params.k}, '
                               f'queue {self.params.queue_size}, chunk {self.params.chunk_size_bytes} B, flush '
                               f'{self.params.flush_period_s} s)')

    def on_exit(self) -> None:
        """Drain the queue and close the open episode as 'aborted' (SIGINT/SIGTERM lose nothing)."""
        self.recorder.stop()

    def _on_policy_id(self, msg) -> None:
        if not self.params.policy_id:  # an explicit parameter wins
            self.recorder.policy_id = msg.data
            self.get_logger().info(f'policy id {msg.data}')

    def _message_class(self, name: str, msgtype: str):
        """The rclpy class of 'pkg/msg/Type', or None with a clear warning (the topic is then not recorded)."""
        pkg, _, typ = msgtype.partition('/msg/')
        try:
            cls = getattr(importlib.import_module(f'{pkg}.msg'), typ)
        except (ImportError, AttributeError, ValueError):
            cls = None
        if cls is None or msgtype not in self.store.fielddefs:
            self.get_logger().warning(f'topic {name!r}: unknown message type {msgtype!r} (expected pkg/msg/Type of an '
                                      f'installed standard package); not recorded')
            return None
        return cls

    def _log(self, level: str, text: str) -> None:
        # one call site per severity: rclpy refuses a severity change at the same call site
        if level == 'error':
            self.get_logger().error(text)
        elif level == 'warn':
            self.get_logger().warning(text)
        else:
            self.get_logger().info(text)

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            self.get_logger().warning(text)

    def _diagnostics(self) -> None:
        snap = self.recorder.snapshot()
        head = diagnostic_status('recorder', 'hapo_recorder',
                                 {k: snap[k] for k in ('episode_open', 'bag', 'queue', 'episodes_written', 'errors')},
                                 WARN if snap['errors'] else OK,
                                 snap['last_error'] or ('recording' if snap['episode_open'] else 'idle'))
        per_topic = [diagnostic_status(f'recorder: {topic}', 'hapo_recorder', c, WARN if c['dropped'] else OK,
                                       f'{c["rate_hz"]} Hz, {c["dropped"]} dropped')
                     for topic, c in snap['topics'].items()]
        self.diag_pub.publish(diagnostic_array(self.get_clock().now().nanoseconds, head, *per_topic))


def main(args=None) -> int:
    return run_node(RecorderNode, 'recorder_node', args)


if __name__ == '__main__':
    sys.exit(main())
