# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""view_node (``hapo view``): the live operator view, the graph's topics on a Foxglove WebSocket server.

    hapo view [--host 127.0.0.1] [--port 8765] [--config config/deploy.yaml] [--gamepad ps4] [key:=value ...]
    hapo deploy view:=true                      (the same node inside the deploy graph)
    python -m hapo_bringup.view_node --ros-args -p port:=8765

Subscribed, as raw bytes (only what the view derives from is decoded): every camera/<name>/image_raw (looked
for every ``camera_discovery_s``), hapo/cmd, hapo/policy/action, hapo/policy/entropy, hapo/policy/uncertain,
hapo/instruction, hapo/episode, hapo/operator, joy and /diagnostics (the mux's mode). Served (view_server.py):
the same topics under their absolute names, as they came (images JPEG, at most ``image_rate_hz``), and
/hapo/view/counter, /hapo/view/safety, /hapo/view/log. In Foxglove: Open connection -> Foxglove WebSocket ->
ws://127.0.0.1:8765, then import config/foxglove/operator_layout.json. A malformed message is still forwarded,
left out of what is derived, counted (the counter's ``malformed``) and warned about at most every 5 s per topic.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from functools import partial
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import Bool, String

from hapo_bringup.view_server import (
    COUNTER,
    COUNTER_SCHEMA,
    LOG,
    SAFETY,
    SAFETY_SCHEMA,
    ViewError,
    ViewParams,
    ViewServer,
)
from hapo_bringup.view_state import RateGate, SafetyState, ViewCounter
from hapo_interfaces import topics
from hapo_interfaces.images import ImageError, to_array
from hapo_interfaces.records import RecordError, decode_event, read_action, read_step
from hapo_interfaces.stamps import to_ns
from hapo_ros.main import run_node
from hapo_ros.parameters import declare
from hapo_ros.qos import LATCHED

# Steps and events feed the counter: reliable, deep enough for a burst. Display streams: best effort, newest wins
# (matches reliable and best-effort publishers, and never makes a publisher keep samples for the view).
EVENTS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
DISPLAY = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
FORWARDED = ((topics.CMD, JointState, EVENTS), (topics.POLICY_ACTION, JointState, DISPLAY),
             (topics.POLICY_ENTROPY, JointState, DISPLAY), (topics.POLICY_UNCERTAIN, Bool, DISPLAY),
             (topics.INSTRUCTION, String, LATCHED), (topics.EPISODE, String, EVENTS), (topics.OPERATOR, String, EVENTS))
MUX_STATUS = 'hapo_teleop/mux'  # the status name mux_node.publish_diagnostics uses; its 'mode' value
BAD = (RecordError, ImageError, ValueError, KeyError, TypeError)


def _msgtype(cls) -> str:
    return f'{cls.__module__.split(".")[0]}/msg/{cls.__name__}'


class ViewNode(Node):
    def __init__(self, **kwargs):
        super().__init__('view_node', **kwargs)
        self.p = declare(self, ViewParams)
        self.server = ViewServer(self.p.host, self.p.port)
        self.counter, self.safety = ViewCounter(), SafetyState(self.p.deadman_button, self.p.joy_timeout_s)
        self.malformed: dict[str, int] = {}
        self.warn_gates: dict[str, RateGate] = {}
        self.cameras: dict[str, object] = {}
        self.log_out = self.server.event_log(self.resolve_topic_name(LOG))
        self.counter_out = self.server.json(self.resolve_topic_name(COUNTER), COUNTER_SCHEMA)
        self.safety_out = self.server.json(self.resolve_topic_name(SAFETY), SAFETY_SCHEMA)
        self.last_safety: dict | None = None
        derive = {topics.CMD: self.on_cmd, topics.POLICY_ACTION: read_action, topics.POLICY_ENTROPY: read_action,
                  topics.EPISODE: self.on_episode, topics.OPERATOR: self.on_operator}
        for topic, cls, qos in FORWARDED:
            name = self.resolve_topic_name(topic)  # the channel's name, a bag's topic name
            channel = self.server.ros(name, _msgtype(cls))
            forward = self.forward_latched if qos is LATCHED else self.forward
            self.create_subscription(cls, topic, partial(forward, name, cls, channel, derive.get(topic)), qos,
                                     raw=True)
        self.server.start()
        self.create_subscription(Joy, topics.JOY, self.on_joy, qos_profile_sensor_data)
        self.create_subscription(DiagnosticArray, topics.DIAGNOSTICS, self.on_diagnostics, DISPLAY)
        self.camera_re = re.compile(re.escape(self.resolve_topic_name('camera')) + r'/[^/]+/image_raw')
        if self.p.image_rate_hz > 0:
            self.create_timer(self.p.camera_discovery_s, self.discover)
        self.create_timer(1.0 / self.p.status_rate_hz, self.publish_status)
        from hapo_bringup.graph import config_dir

        self.get_logger().info(
            f'serving {self.server.url} (Foxglove: Open connection -> Foxglove WebSocket); layout '
            f'{config_dir() / "foxglove" / "operator_layout.json"}; images {self.p.image_rate_hz} Hz per camera; '
            f'deadman button {self.p.deadman_button}')

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def forward(self, topic: str, cls, channel, derive, raw: bytes) -> None:
        channel.log(raw)  # as it came, malformed or not: the view shows what is on the wire
        if derive is not None:
            try:
                derive(deserialize_message(raw, cls))
            except BAD as exc:
                self.bad(topic, exc)

    def forward_latched(self, topic: str, cls, channel, derive, raw: bytes) -> None:
        self.server.keep_latched(topic, channel, raw)
        self.forward(topic, cls, channel, derive, raw)

    def bad(self, topic: str, exc: Exception) -> None:
        n = self.malformed[topic] = self.malformed.get(topic, 0) + 1
        if self.warn_gates.setdefault(topic, RateGate(0.2)).due(self.now_ns()):  # per topic, not per call site
            text = f'{topic}: malformed message left out of the view\'s state ({exc}); {n} so far'
            self.get_logger().warning(text)
            self.log_out.write(self.now_ns(), 'hapo view', text, warning=True)

    def on_cmd(self, msg: JointState) -> None:
        step = read_step(msg)
        self.counter.step(step)
        self.safety.command(self.now_ns(), step.source)
        self.publish_safety(changed_only=True)

    def on_episode(self, msg: String) -> None:
        event = decode_event(msg.data)
        self.counter.event(event)
        extra = ' '.join(f'{k}={v}' for k, v in sorted(event.extra.items()))
        self.log_out.write(event.stamp_ns, topics.EPISODE, f'{event.event.name.lower()} ({event.origin}) {extra}')

    def on_operator(self, msg: String) -> None:
        entry = json.loads(msg.data)
        if not isinstance(entry, dict):
            raise ValueError('operator entry must be a JSON object')
        text = f'{entry.get("event")} at step {entry.get("step")} of seed {entry.get("seed")}: {entry.get("reason")}'
        self.log_out.write(self.now_ns(), topics.OPERATOR, text)

    def on_joy(self, msg: Joy) -> None:
        self.safety.joy(self.now_ns(), msg.buttons)
        self.publish_safety(changed_only=True)

    def on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            mode = {kv.key: kv.value for kv in status.values}.get('mode') if status.name == MUX_STATUS else None
            if mode:
                self.safety.mux_mode(self.now_ns(), mode)
                self.publish_safety(changed_only=True)

    def discover(self) -> None:
        for name, types in self.get_topic_names_and_types():
            if name not in self.cameras and self.camera_re.fullmatch(name) and 'sensor_msgs/msg/Image' in types:
                channel = self.cameras[name] = self.server.images(name, self.p.jpeg_quality)
                self.create_subscription(Image, name, partial(self.on_image, name, channel,
                                                              RateGate(self.p.image_rate_hz)),
                                         qos_profile_sensor_data, raw=True)
                self.get_logger().info(f'camera {name}: JPEG at most {self.p.image_rate_hz} Hz')

    def on_image(self, topic: str, channel, gate: RateGate, raw: bytes) -> None:
        if not channel.wanted() or not gate.due(self.now_ns()):  # nobody watches, or not yet: not even decoded
            return
        try:
            msg = deserialize_message(raw, Image)
            channel.send(to_array(msg), to_ns(msg.header.stamp), msg.header.frame_id)
        except BAD as exc:
            self.bad(topic, exc)

    def publish_safety(self, changed_only: bool = False) -> None:
        snap = self.safety.snapshot(self.now_ns())
        if not changed_only or snap != self.last_safety:
            self.safety_out.log(snap)
            self.last_safety = snap

    def publish_status(self) -> None:
        self.server.resend_latched()
        self.counter_out.log({**self.counter.snapshot(), 'malformed': dict(self.malformed)})
        self.publish_safety()

    def on_exit(self) -> None:
        self.server.stop()
        sent = {name: ch.sent for name, ch in self.cameras.items()}
        print(f'view_node: images sent {sent}, malformed {self.malformed}', file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """``python -m`` / ``ros2 run`` / the graph runner (``argv`` None: ROS arguments from sys.argv), or ``hapo view
    ARGS``: the view node alone, with the deploy config's parameters (deadman from mux_node, as in the graph)."""
    if argv is None:
        return run_node(ViewNode, 'view_node', None, start_errors=(ViewError,))
    from hapo_bringup.graph import DEPLOY_GRAPH, config_dir, gamepad_config, resolve
    from hapo_bringup.runner import write_params
    from hapo_interfaces.params import ParamError

    argv, ros = (argv[:argv.index('--ros-args')], argv[argv.index('--ros-args') + 1:]) if '--ros-args' in argv \
        else (list(argv), [])
    ap = argparse.ArgumentParser(prog='hapo view', description='Serve the live operator view (Foxglove WebSocket) '
                                 'of a running graph until Ctrl-C.', epilog='Foxglove: Open connection -> Foxglove '
                                 'WebSocket -> ws://HOST:PORT; then import config/foxglove/operator_layout.json.')
    ap.add_argument('overrides', nargs='*', metavar='key:=value', help='view_node parameters (hapo deploy --help)')
    ap.add_argument('--host', default=None, help="address to bind (default: the config's, 127.0.0.1)")
    ap.add_argument('--port', type=int, default=None, help="port (default: the config's, 8765; 0: any free one)")
    ap.add_argument('--config', type=Path, default=config_dir() / 'deploy.yaml', help='ROS 2 parameter YAML')
    ap.add_argument('--gamepad', default=None, help="the mux's gamepad map (xbox, ps4, a YAML): its deadman button")
    args = ap.parse_args(argv)
    chosen = [f'view_node.{k}:={v}' for k, v in (('host', args.host), ('port', args.port)) if v is not None]
    graph = [n for n in DEPLOY_GRAPH if n.name in ('mux_node', 'view_node')]
    try:
        extra = [gamepad_config(args.gamepad)] if args.gamepad else []
        _, params = resolve(args.config, ['view:=true', *args.overrides, *chosen], graph=graph, extra_configs=extra)
    except ParamError as exc:
        print(f'hapo view: {exc}', file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix='hapo-view-') as tmp:
        path = write_params({'view_node': params['view_node']}, Path(tmp) / 'view.yaml')
        return run_node(ViewNode, 'view_node', ['hapo view', '--ros-args', '-r', '__node:=view_node', '--params-file',
                                                str(path), *ros], start_errors=(ViewError,))


if __name__ == '__main__':
    sys.exit(main())
