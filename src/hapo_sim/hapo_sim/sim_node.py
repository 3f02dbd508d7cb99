# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Simulated robot node: publishes camera images + joint/object states, executes ``hapo/cmd``.

    python -m hapo_sim.sim_node --ros-args -p task:=lift -p cameras:="['agentview','robot0_eye_in_hand']"

Published: ``camera/<name>/image_raw`` (rgb8, sensor data QoS), ``robot/joint_states`` and
``robot/object_state`` (JointState, reliable depth 10, same stamp as the images), ``hapo/instruction``
(transient local), ``hapo/episode`` (reliable depth 50; START/SUCCESS/FAILURE/ABORT, origin 'sim'), and
``hapo/episode/latest`` (transient local: the newest START or end event heard, for a recorder restarted mid-episode).
``scenario:=FILE`` simulates that scenario's scene variation; its task, cameras, image size and horizon are
parameters of their own, which ``hapo deploy scenario:=FILE`` sets from the file.
Subscribed: ``hapo/cmd`` (records.read_step), ``hapo/episode`` (terminal events of other origins end
the episode). Service ``sim/reset`` (std_srvs/Trigger). The episode loop (what steps, when episodes start
and end) is ``episode_loop.py``; stepping rules: ``stepping.py``.
The first episode starts once the ``wait_for`` nodes subscribe ``hapo/episode`` (a recorder that came up
after the START would lose that whole episode).
"""

from __future__ import annotations

import sys
import time

from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from hapo_interfaces import topics
from hapo_interfaces.images import fill_image
from hapo_interfaces.records import EpisodeMessage, RecordError, decode_event, encode_event, read_step
from hapo_interfaces.stamps import fill
from hapo_ros.episode_latest import relay_latest_episode
from hapo_ros.main import run_node
from hapo_ros.parameters import declare
from hapo_ros.qos import LATCHED
from hapo_sim.env import DEFAULT_INSTRUCTIONS, SimEnv, SimError, flatten_state, task_key
from hapo_sim.episode_loop import EpisodeLoop, Output, Published
from hapo_sim.scenario import ScenarioError, scenario_variation
from hapo_sim.sim_params import SimParams


class SimNode(Node):
    def __init__(self, **kwargs):
        super().__init__('sim', **kwargs)
        p = self.p = declare(self, SimParams)
        # The model is always made with SimEnv's fixed seed (robosuite samples object sizes then); ``seed`` only
        # picks episodes, so seed s is the same scene whichever node or evaluation worker runs it.
        self.env = SimEnv(p.task, p.cameras, p.image_size, control_freq=p.control_rate_hz,
                          horizon=p.horizon, variation=scenario_variation(p.scenario, p.task))
        self.instruction = p.instruction or DEFAULT_INSTRUCTIONS[task_key(p.task)]
        self.loop = EpisodeLoop(self.env, p, self.instruction, self._now_ns)
        self.bad_cmd = 0
        # Images: sensor data (best effort, latest wins). States: reliable, the recorder wants every one.
        self.pub_img = {c: self.create_publisher(Image, topics.camera_topic(c), qos_profile_sensor_data)
                        for c in p.cameras}
        self.pub_joints = self.create_publisher(JointState, topics.JOINT_STATES, 10)
        self.pub_objects = self.create_publisher(JointState, topics.OBJECT_STATE, 10)
        # Instruction: latched so late joiners get it; episode events: reliable and deep, none may be lost.
        self.pub_instr = self.create_publisher(String, topics.INSTRUCTION, LATCHED)
        self.pub_event = self.create_publisher(String, topics.EPISODE, 50)
        relay_latest_episode(self)  # a recorder restarted mid-episode resumes it
        # Commands: reliable, depth 10 so the one answering the current observation is not overwritten.
        self.create_subscription(JointState, topics.CMD, self._on_cmd, 10)
        self.create_subscription(String, topics.EPISODE, self._on_episode, 50)
        self.create_service(Trigger, topics.RESET_SERVICE, self._on_reset)
        self.pub_instr.publish(String(data=self.instruction))
        self.get_logger().info(f'task={self.env.task} scenario={p.scenario or "none"} mode={p.mode} '
                               f'cameras={list(p.cameras)} {p.image_size}px horizon={p.horizon} seed={p.seed} '
                               f'max_episodes={p.max_episodes}')
        self._sent: list = []  # (publisher, message) of the current observation, for republishing
        self._sent_ns = 0
        if p.mode == 'realtime':
            self.create_timer(1.0 / p.control_rate_hz, self._on_tick)
        elif p.republish_s > 0:
            self.create_timer(min(p.republish_s, 0.25), self._on_republish)
        self._waiting = [n for n in p.wait_for if n]
        self._wait_until = time.monotonic() + p.wait_timeout_s
        if self._waiting:
            self.get_logger().info(f'episode 0 starts once {self._waiting} subscribe {topics.EPISODE} '
                                   f'(at most {p.wait_timeout_s:.0f} s)')
            self._wait_timer = self.create_timer(0.1, self._on_wait)
        else:
            self._emit(self.loop.start(self._now_ns()))

    def _on_wait(self) -> None:
        if self.loop.episodes.running:  # a reset service call started it meanwhile
            self.destroy_timer(self._wait_timer)
            return
        readers = self.get_subscriptions_info_by_topic(self.resolve_topic_name(topics.EPISODE))
        missing = [n for n in self._waiting if n not in {i.node_name for i in readers}]
        matched = self.pub_event.get_subscription_count() >= len(readers)  # the writer has caught up with the graph
        if (missing or not matched) and time.monotonic() < self._wait_until:
            return
        if missing:
            self.get_logger().warning(f'{missing} not subscribed to {topics.EPISODE} after '
                                      f'{self.p.wait_timeout_s:.0f} s; starting anyway')
        self.destroy_timer(self._wait_timer)
        self._emit(self.loop.start(self._now_ns()))
        self.get_logger().info(self.loop.started)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _emit(self, outputs: list[Output]) -> None:
        """Publish the loop's outputs in order: observations, episode events, log lines."""
        for out in outputs:
            if isinstance(out, Published):
                self._publish(out)
            elif isinstance(out, EpisodeMessage):
                self.pub_event.publish(String(data=encode_event(out)))
            else:
                self.get_logger().info(out)

    def _publish(self, out: Published) -> None:
        obs, stamp = out.obs, out.stamp_ns
        joints = JointState(name=obs.joint_names, position=[float(v) for v in obs.joint_positions])
        fill(joints.header.stamp, stamp)
        names, values = flatten_state(obs.object_state)
        objects = JointState(name=names, position=values)
        fill(objects.header.stamp, stamp)
        # Joint states first: a policy using proprio then has them when the image triggers inference.
        self._sent = [(self.pub_joints, joints), (self.pub_objects, objects)]
        self._sent += [(self.pub_img[c], fill_image(Image(), img, stamp, c)) for c, img in obs.images.items()]
        self._send()

    def _send(self) -> None:
        for pub, msg in self._sent:
            pub.publish(msg)
        self._sent_ns = self._now_ns()

    def _on_republish(self) -> None:
        if self.loop.lockstep.current_ns is not None and self._now_ns() - self._sent_ns >= self.p.republish_s * 1e9:
            self.loop.lockstep.counts['republished'] += 1
            self._send()

    def _on_cmd(self, msg: JointState) -> None:
        try:
            step = read_step(msg)
        except RecordError as exc:
            self.bad_cmd += 1
            self.get_logger().warning(f'ignored bad {topics.CMD} ({self.bad_cmd} so far): {exc}',
                                      throttle_duration_sec=2.0)
            return
        self._emit(self.loop.command(self._now_ns(), step))

    def _on_tick(self) -> None:
        self._emit(self.loop.tick(self._now_ns()))

    def _on_episode(self, msg: String) -> None:
        try:
            event = decode_event(msg.data)
        except RecordError as exc:
            self.get_logger().warning(f'ignored bad {topics.EPISODE}: {exc}', throttle_duration_sec=2.0)
            return
        self._emit(self.loop.ended_by(self._now_ns(), event))

    def _on_reset(self, request, response):
        response.success, response.message, outputs = self.loop.reset(self._now_ns())
        self._emit(outputs)
        return response

    def destroy_node(self):
        # Also called by the context shutdown, possibly on a half-built node (bad parameter): close once.
        env, self.env = getattr(self, 'env', None), None
        if env is not None:
            # print, not the logger: after a signal the context (and so rosout) is already shut down.
            print(f'sim_node: commands {dict(self.loop.lockstep.counts)} realtime {dict(self.loop.latest.counts)} '
                  f'bad {self.bad_cmd}', file=sys.stderr)
            env.close()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(SimNode, 'sim_node', args, start_errors=(SimError, ScenarioError))


if __name__ == '__main__':
    sys.exit(main())
