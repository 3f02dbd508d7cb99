# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The Foxglove side of ``hapo view``: its parameters, the WebSocket server (foxglove-sdk) and its channels; no rclpy.

Channel names are the absolute ROS names, so the layout (config/foxglove/operator_layout.json) opens a recorded
bag too. ROS topics are forwarded as they arrive on the wire (CDR, schema ``ros2msg`` from the bag writer's
message definitions: byte for byte what a bag holds); camera images go out throttled and JPEG-compressed as
``foxglove.CompressedImage`` on the image topic's own name (Foxglove's Image panel takes both, so one panel shows
the live JPEG and a bag's raw rgb8); what the view derives has channels of its own under ``/hapo/view/``.

foxglove-sdk 0.30 speaks the WebSocket subprotocol ``foxglove.sdk.v1`` (the ``foxglove.websocket.v1`` protocol
under its new name: a current Foxglove app offers it; clients that offer only the old name get HTTP 400).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hapo_interfaces.params import param

COUNTER = 'hapo/view/counter'  # JSON: ViewCounter.snapshot
SAFETY = 'hapo/view/safety'  # JSON: SafetyState.snapshot
LOG = 'hapo/view/log'  # foxglove.Log: episode and operator events, malformed-input warnings


@dataclass(frozen=True)
class ViewParams:
    """Parameters of view_node (config/deploy.yaml); ``hapo view --host/--port`` set the first two."""

    host: str = param('127.0.0.1', 'address the Foxglove WebSocket server binds (0.0.0.0: every interface; '
                                   'prefer SSH port forwarding)', read_only=True)
    port: int = param(8765, 'its port (0: any free port, logged)', lo=0, hi=65535, read_only=True)
    image_rate_hz: float = param(5.0, 'camera images sent per camera and second, JPEG-compressed (0: none)',
                                 unit='Hz', lo=0.0, hi=60.0, read_only=True)
    jpeg_quality: int = param(80, 'JPEG quality of the images', lo=1, hi=100, read_only=True)
    status_rate_hz: float = param(5.0, 'how often the counter and the safety state are sent (the safety state '
                                       'also at once when it changes)', unit='Hz', lo=0.1, hi=100.0,
                                  read_only=True)
    cameras: list = param(['agentview'], 'camera names served from the start (camera/<name>/image_raw; the '
                                         "graph sets the recorder's); others are found while running")
    camera_discovery_s: float = param(1.0, 'how often camera/<name>/image_raw topics not in cameras are looked '
                                                       'for',
                                      unit='s', lo=0.05, hi=60.0, read_only=True)
    deadman_button: int = param(4, "Joy button that is the deadman: the mux's (the graph copies mux_node's)",
                                lo=0, hi=63, read_only=True)
    joy_timeout_s: float = param(0.5, "a Joy older than this no longer holds the deadman: the mux's (copied too)",
                                 unit='s', lo=0.01, hi=10.0, read_only=True)


class ViewError(RuntimeError):
    """The view cannot serve (port taken, foxglove-sdk missing); the text is the one-line reason."""


_BOOL, _INT, _NUM = {'type': 'boolean'}, {'type': 'integer'}, {'type': ['number', 'null']}
COUNTER_SCHEMA = {
    'title': 'hapo.ViewCounter', 'type': 'object', 'description': 'episode counter since the view started',
    'properties': {
        'episodes': _INT, 'successes': _INT, 'failures': _INT, 'aborts': _INT, 'success_rate': _NUM,
        'steps': _INT, 'human_steps': _INT, 'hold_steps': _INT, 'intervention_ratio': _NUM,
        'interventions': _INT, 'last_outcome': {'type': 'string'}, 'duplicate_end_events': _INT,
        'malformed': {'type': 'object', 'description': 'malformed messages per topic, left out of the counts',
                      'additionalProperties': _INT},
        'episode': {'type': 'object', 'properties': {
            'index': _INT, 'open': _BOOL, 'seed': {'type': ['integer', 'null']}, 'steps': _INT,
            'human_steps': _INT, 'intervention_ratio': _NUM}}}}
SAFETY_SCHEMA = {
    'title': 'hapo.ViewSafety', 'type': 'object', 'description': 'who drives; deadman; e-stop',
    'properties': {'source': {'type': 'string', 'enum': ['policy', 'human', 'none', 'stopped', 'unknown']},
                   'deadman_held': _BOOL, 'joy_fresh': _BOOL, 'estop_latched': _BOOL,
                   'mux_mode': {'type': 'string'}}}


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes."""
    import cv2

    ok, buf = cv2.imencode('.jpg', np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f'JPEG encoding failed for an image of shape {rgb.shape}')
    return buf.tobytes()


class ImageChannel:
    """One camera's channel: ``foxglove.CompressedImage`` (protobuf) with JPEG data."""

    def __init__(self, topic: str, context: Any, quality: int):
        from foxglove.channels import CompressedImageChannel

        self.channel, self.quality, self.sent = CompressedImageChannel(topic, context=context), quality, 0

    def wanted(self) -> bool:
        """Whether a client subscribes (else the image is not even decoded)."""
        return self.channel.has_sinks()

    def send(self, rgb: np.ndarray, stamp_ns: int, frame_id: str) -> None:
        from foxglove.messages import CompressedImage, Timestamp

        ts = Timestamp(sec=stamp_ns // 10**9, nsec=stamp_ns % 10**9)
        self.channel.log(CompressedImage(timestamp=ts, frame_id=frame_id, data=encode_jpeg(rgb, self.quality),
                                         format='jpeg'))
        self.sent += 1


class EventLog:
    """A ``foxglove.Log`` channel (Foxglove's Log panel): one line per event or warning."""

    def __init__(self, topic: str, context: Any):
        from foxglove.channels import LogChannel

        self.channel = LogChannel(topic, context=context)

    def write(self, stamp_ns: int, name: str, text: str, warning: bool = False) -> None:
        from foxglove.messages import Log, LogLevel, Timestamp

        self.channel.log(Log(timestamp=Timestamp(sec=stamp_ns // 10**9, nsec=stamp_ns % 10**9), name=name,
                             level=LogLevel.Warning if warning else LogLevel.Info, message=text))


class ViewServer:
    """The channels' factory and, from ``start()`` on, the WebSocket server; ``stop()`` closes it.

    Create the channels that exist from the start before ``start()``: a client that connects while a channel is
    being created can be told of it before the server can subscribe it ('subscribe to unknown channel', seen with
    a client connecting during the node's start).
    """

    def __init__(self, host: str, port: int, name: str = 'hapo view'):
        try:
            import foxglove
        except ImportError:
            raise ViewError('foxglove-sdk is not installed: pip install foxglove-sdk (see constraints.txt)') from None
        from hapo_recorder.bag_writer import typestore

        self.context, self.host, self.port, self.name, self.store = foxglove.Context(), host, port, name, typestore()
        self.server = None
        self.latched: dict[str, tuple[Any, bytes]] = {}  # topic -> (channel, its last message)
        self.joined: set[str] = set()  # latched topics a client subscribed to since the last resend

    def on_subscribe(self, client: Any, channel: Any) -> None:
        """foxglove's ServerListener (called on the server's thread): a latched topic's last message goes to the
        new subscriber at the next ``resend_latched``."""
        self.joined.add(channel.topic)

    def keep_latched(self, topic: str, channel: Any, raw: bytes) -> None:
        self.latched[topic] = (channel, raw)

    def resend_latched(self) -> None:
        """Log again the last message of each latched topic a client joined since the last call (a latched ROS
        topic, the instruction, is published once: a client that connects later would never see it)."""
        while self.joined:
            kept = self.latched.get(self.joined.pop())
            if kept is not None:
                kept[0].log(kept[1])

    def start(self) -> None:
        import foxglove

        try:
            self.server = foxglove.start_server(name=self.name, host=self.host, port=self.port, context=self.context,
                                                 server_listener=self)
        except RuntimeError as exc:  # FoxgloveError: e.g. 'Failed to bind port: Address already in use'
            raise ViewError(f'cannot serve on {self.host}:{self.port}: {exc} (another hapo view? set port)') from None
        self.port = self.server.port  # the one chosen for port 0

    @property
    def url(self) -> str:
        return f'ws://{self.host}:{self.port}'

    def ros(self, topic: str, msgtype: str):
        """A channel forwarding serialized ROS 2 messages of ``msgtype`` ('pkg/msg/Type') as they are (CDR)."""
        from foxglove import Channel, Schema

        text, _ = self.store.generate_msgdef(msgtype, ros_version=2)
        return Channel(topic, schema=Schema(name=msgtype, encoding='ros2msg', data=text.encode()),
                       message_encoding='cdr', context=self.context)

    def json(self, topic: str, schema: dict):
        from foxglove import Channel

        return Channel(topic, schema=schema, context=self.context)

    def images(self, topic: str, quality: int) -> ImageChannel:
        return ImageChannel(topic, self.context, quality)

    def event_log(self, topic: str) -> EventLog:
        return EventLog(topic, self.context)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
