# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Live bag replay: recorded observations over ROS topics, at their original pace, into a running policy node.

The recorder owns bag playback (as ``ros2 bag play`` belongs with ``ros2 bag record``); the trainer's
``hapo evaluate --live`` calls ``load`` and ``score`` here, so the trainer itself holds no node::

    hapo evaluate --live --policy CKPT --bags runs/episodes [--rate 1.0] [--K 10] [--out live.json]
    (with policy_node running: hapo deploy robot:=none record:=false joy:=false checkpoint:=CKPT, or
    ros2 launch hapo_bringup replay.launch.py checkpoint:=CKPT bags:=DIR, which runs both)

Per episode: the recorded instruction (transient local), then for every observation the joint state
and the camera images with their original stamps, paced as recorded (``--rate`` scales). The policy
node's answers on ``hapo/policy/action`` are matched by stamp and scored by ``replay_score``: for each
training step (relabelled with K), per class, the action L1 and token accuracy against the executed action,
the share answered, the stamp-to-answer latency, and whether the live answer equals what the same
checkpoint computes offline on that observation (the live path must not change what the policy does).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from hapo_interfaces import topics
from hapo_interfaces.images import fill_image
from hapo_interfaces.records import RecordError, read_action
from hapo_interfaces.stamps import fill, to_ns
from hapo_recorder.bag_reader import Episode, list_episodes, read_episode
from hapo_recorder.replay_score import episode_rows, summarise
from hapo_ros.background import BackgroundNode
from hapo_ros.qos import LATCHED

WARMUP_NS = 1  # stamp of the warm-up observation (before any recorded one)


class LiveReplay(BackgroundNode):
    """Publishes episodes and collects the policy node's answers (a node in its own context)."""

    def __init__(self, cameras: list[str], domain_id: int | None = None):
        super().__init__('bag_replay', domain_id)
        self.answers: dict[int, tuple[tuple[float, ...], int]] = {}  # stamp -> (action, receive ns)
        self.bad_answers = 0
        self.pub_images = {c: self.node.create_publisher(Image, topics.camera_topic(c), qos_profile_sensor_data)
                           for c in cameras}
        self.pub_joints = self.node.create_publisher(JointState, topics.JOINT_STATES, qos_profile_sensor_data)
        self.pub_instruction = self.node.create_publisher(String, topics.INSTRUCTION, LATCHED)
        self.sub = self.node.create_subscription(JointState, topics.POLICY_ACTION, self._on_action,
                                                 QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))

    def _on_action(self, msg: JointState) -> None:
        try:
            self.answers[to_ns(msg.header.stamp)] = (read_action(msg), time.time_ns())
        except RecordError:
            self.bad_answers += 1

    def wait_for_policy(self, timeout_s: float, first: Episode) -> bool:
        """Until the policy node answers a warm-up observation (``first``'s first one, stamped WARMUP_NS): its
        first inference can take a second on a busy machine, and the replay must not lose frames to it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sub.get_publisher_count() and all(p.get_subscription_count() for p in self.pub_images.values()):
                self.pub_instruction.publish(String(data=first.instruction))
                stamp = min(set().union(*(set(s) for s in first.images.values())))
                self._publish(first, stamp, WARMUP_NS)
                answered_by = time.monotonic() + 0.5
                while time.monotonic() < answered_by:
                    if self.answers.pop(WARMUP_NS, None) is not None:
                        return True
                    time.sleep(0.02)
            time.sleep(0.05)
        return False

    def _publish(self, ep: Episode, stamp: int, as_stamp: int) -> None:
        """The recorded observation at ``stamp``, stamped ``as_stamp``: joint state first, as the sim does
        (the policy pairs it by stamp), then the images."""
        if stamp in ep.joint_states:
            js = JointState(position=[float(v) for v in ep.joint_states[stamp]])
            fill(js.header.stamp, as_stamp)
            self.pub_joints.publish(js)
        for cam, frames in ep.images.items():
            if cam in self.pub_images and stamp in frames:
                self.pub_images[cam].publish(fill_image(Image(), frames[stamp], as_stamp, cam))

    def play(self, ep: Episode, rate: float) -> dict[int, int]:
        """Publish every recorded observation of ``ep`` at its recorded pace; returns stamp -> publish ns."""
        self.pub_instruction.publish(String(data=ep.instruction))
        time.sleep(0.2)  # let the instruction land before the first frame
        stamps = sorted(set().union(*(set(s) for s in ep.images.values())))
        sent: dict[int, int] = {}
        t0, s0 = time.monotonic(), stamps[0] if stamps else 0
        for stamp in stamps:
            delay = t0 + (stamp - s0) / 1e9 / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._publish(ep, stamp, stamp)
            sent[stamp] = time.time_ns()
        time.sleep(0.5)  # the last answers
        return sent


def score(policy: Any, episodes: list[Episode], k: int, rate: float, timeout_s: float = 30.0) -> dict[str, Any]:
    """Replay ``episodes`` into the running policy node and score its answers (see module docstring)."""
    replay = LiveReplay(policy.camera_names)
    try:
        if not replay.wait_for_policy(timeout_s, episodes[0]):
            raise RuntimeError(f'no policy node answering on {topics.POLICY_ACTION} for cameras '
                               f'{policy.camera_names} within {timeout_s:.0f} s')
        rows = []
        for ep in episodes:
            rows += episode_rows(policy, ep, k, replay.play(ep, rate), replay.answers)
    finally:
        replay.close()
    return summarise(policy, rows, replay.bad_answers)


def load(paths: list[str]) -> list[Episode]:
    """The episodes under ``paths`` with images decoded (skipping unreadable ones is the caller's choice)."""
    return [read_episode(Path(p)) for p in list_episodes(paths)]
