# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Policy node: newest camera frame(s) + instruction (+ joint positions) -> VlaPolicy -> hapo/policy/action.

    python -m hapo_policy.policy_node --ros-args -p checkpoint:=ckpt/base

camera/<name>/image_raw -> LatestFrames (callbacks only store) -> inference thread -> action + entropy,
both stamped with the image stamp, and hapo/policy/uncertain (uncertainty.py: the entropy flag with
hysteresis, published with every step). Frames arriving during inference replace the pending one (counted).
robot/joint_states -> JointsByStamp: the frame's own joint state, else the latest (frames.py has the rule).
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String

from hapo_interfaces import topics
from hapo_interfaces.images import ImageError, to_array
from hapo_interfaces.params import ParamError
from hapo_interfaces.records import fill_action
from hapo_interfaces.stamps import to_ns
from hapo_interfaces.timing import LatencyWindow
from hapo_policy.errors import CheckpointError
from hapo_policy.frames import JointsByStamp, LatestFrames
from hapo_policy.model import VlaPolicy
from hapo_policy.policy_params import PolicyParams
from hapo_policy.tiny import TinyVlaConfig
from hapo_policy.uncertainty import UncertaintyFlag
from hapo_ros.diagnostics import OK, WARN, diagnostic_array, diagnostic_status
from hapo_ros.main import NodeStartError, run_node
from hapo_ros.parameters import declare
from hapo_ros.qos import LATCHED

# Reliable with a history of 100: a reader that falls behind for a few seconds (the recorder on a loaded machine) is
# resent every proposal instead of only the newest (seen: 119 steps of a CI run recorded without one); each reader's
# own depth decides what it keeps (the mux matches stamps).
COMMAND = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class PolicyNode(Node):
    def __init__(self, **kwargs):
        super().__init__('policy_node', **kwargs)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None  # destroy_node may run on a half-built node
        self.p = declare(self, PolicyParams)
        import torch
        if self.p.torch_threads:
            torch.set_num_threads(self.p.torch_threads)
        names = [n.strip() for n in self.p.camera_names.split(',') if n.strip()]
        if self.p.checkpoint:
            self.policy = VlaPolicy.from_pretrained(self.p.checkpoint, device=self.p.device,
                                                     trust_remote_code=self.p.trust_remote_code)
        else:  # a fresh model sees the cameras named (e.g. by a scenario)
            self.policy = VlaPolicy.create(TinyVlaConfig(camera_names=names) if names else None, seed=self.p.seed)
            self.get_logger().warning(f'UNTRAINED model: checkpoint is empty, fresh weights from seed {self.p.seed}; '
                                      'its actions are noise')
        cams = self.policy.camera_names
        names = names or cams
        if len(names) != len(cams):
            raise ParamError(f'parameter camera_names={names} must name {len(cams)} cameras (model has {cams})')
        self.frames = LatestFrames(cams, self.p.match_stamps)
        self.instruction = self.p.instruction
        self.joints = JointsByStamp(self.p.match_stamps)
        self.bad_frames = self.no_proprio = self.inferences = 0
        self.last_stamp_ns = -1  # of the newest inference (the exit line names it)
        self.latency = LatencyWindow()
        if self.p.uncertain_hysteresis >= self.p.uncertain_threshold:
            raise ParamError(f'parameter uncertain_hysteresis={self.p.uncertain_hysteresis} must be below '
                             f'uncertain_threshold={self.p.uncertain_threshold}')
        self.uncertain = UncertaintyFlag(self.p.uncertain_threshold, self.p.uncertain_hysteresis)
        self.uncertain_steps = 0
        for cam, name in zip(cams, names, strict=True):
            topic = topics.camera_topic(name)
            self.create_subscription(Image, topic, lambda m, c=cam, t=topic: self._on_image(c, t, m),
                                     qos_profile_sensor_data)  # newest frame only; a late frame is useless
        if self.policy.proprio_dim > 0:
            self.create_subscription(JointState, topics.JOINT_STATES, self._on_joints, qos_profile_sensor_data)
        self.create_subscription(String, topics.INSTRUCTION, self._on_instruction, LATCHED)  # latched by sender
        self.pub_id = self.create_publisher(String, topics.POLICY_ID, LATCHED)  # the recorder tags episodes with it
        self.pub_id.publish(String(data=self.policy.policy_id))
        self.pub_action = self.create_publisher(JointState, topics.POLICY_ACTION, COMMAND)
        self.pub_entropy = self.create_publisher(JointState, topics.POLICY_ENTROPY, COMMAND)
        self.pub_uncertain = self.create_publisher(Bool, topics.POLICY_UNCERTAIN, 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, topics.DIAGNOSTICS, 10)
        self.create_timer(self.p.diagnostics_period_s, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._infer_loop, name='inference', daemon=True)
        self._worker.start()
        self.get_logger().info(f'policy {self.policy.policy_id} ({self.policy.source or "fresh"}), cameras '
                               f'{dict(zip(cams, names, strict=True))}, proprio_dim {self.policy.proprio_dim}')

    def _on_image(self, cam: str, topic: str, msg: Image) -> None:
        try:
            image = to_array(msg)
        except ImageError as exc:
            self.bad_frames += 1
            self.get_logger().warning(f'{topic}: bad frame (encoding {msg.encoding!r}): {exc}',
                                      throttle_duration_sec=5.0)
            return
        self.frames.put(cam, to_ns(msg.header.stamp), image)

    def _on_joints(self, msg: JointState) -> None:
        if len(msg.position) < self.policy.proprio_dim:
            self.get_logger().warning(f'{topics.JOINT_STATES}: {len(msg.position)} positions, need '
                                      f'{self.policy.proprio_dim}', throttle_duration_sec=5.0)
            return
        self.joints.put(to_ns(msg.header.stamp), np.asarray(msg.position[:self.policy.proprio_dim], dtype=np.float32))

    def _on_instruction(self, msg: String) -> None:
        self.instruction = msg.data
        self.get_logger().info(f'instruction: {msg.data!r}')

    def _infer_loop(self) -> None:
        while not self._stop.is_set():
            frame = self.frames.take(timeout_s=0.2)
            if frame is None:
                continue
            proprio = self.joints.for_frame(frame.stamp_ns) if self.policy.proprio_dim > 0 else None
            if self.policy.proprio_dim > 0 and proprio is None:
                self.no_proprio += 1  # stale until the first joint state (no guessing at zeros)
                self.get_logger().warning(f'no {topics.JOINT_STATES} yet: frame dropped', throttle_duration_sec=5.0)
                continue
            start = time.perf_counter()
            pred = self.policy.predict(frame.images, self.instruction, proprio)
            self.latency.add(time.perf_counter() - start)
            self.inferences += 1
            self.last_stamp_ns = frame.stamp_ns
            self.pub_action.publish(fill_action(JointState(), frame.stamp_ns, pred.action, 'policy'))
            self.pub_entropy.publish(fill_action(JointState(), frame.stamp_ns, pred.entropy, 'policy'))
            raised = self.uncertain.update(pred.entropy)
            self.uncertain_steps += raised
            self.pub_uncertain.publish(Bool(data=raised))

    def _publish_diagnostics(self) -> None:
        values = {**{f'latency_{k}': v for k, v in self.latency.summary_ms().items()},
                  'inferences': self.inferences, 'frames_received': self.frames.received,
                  'frames_skipped': self.frames.skipped, 'camera_clock_jumps': self.frames.clock_jumps,
                  'bad_frames': self.bad_frames,
                  'frames_without_proprio': self.no_proprio, 'proprio_unmatched': self.joints.unmatched,
                  'uncertain_steps': self.uncertain_steps,
                  'policy_id': self.policy.policy_id, 'checkpoint': self.policy.source or 'UNTRAINED'}
        trained = bool(self.policy.source)
        status = diagnostic_status(f'{self.get_name()}: inference', self.policy.policy_id, values,
                                   OK if trained else WARN, 'ok' if trained else 'untrained model')
        self.pub_diag.publish(diagnostic_array(self.get_clock().now().nanoseconds, status))

    def on_exit(self) -> None:
        alive = self._worker is not None and self._worker.is_alive()
        print(f'policy_node: {self.inferences} inferences, {self.frames.received} frames ({self.frames.skipped} '
              f'skipped, {self.bad_frames} bad, {self.no_proprio} without proprio), the last on {self.last_stamp_ns}, '
              f'inference thread '
              f'{"running" if alive else "stopped"}', file=sys.stderr)

    def destroy_node(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self.frames.close()
            self._worker.join(timeout=5.0)
        super().destroy_node()


def _make_node() -> PolicyNode:
    try:
        return PolicyNode()
    except CheckpointError as exc:
        raise NodeStartError(f'cannot load checkpoint {exc}') from None


def main(args: list[str] | None = None) -> int:
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()  # no tqdm bars in a node log
    return run_node(_make_node, 'policy_node', args)


if __name__ == '__main__':
    sys.exit(main())
