# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""view_node served to a real WebSocket client, as the Foxglove app sees it: a probe publishes every input topic
over DDS, the client (``websockets``) reads serverInfo and the advertised channels, subscribes to all of them and
decodes what arrives: forwarded ROS messages (CDR), JPEG images of the right size and colours, the counter, the
safety state and the event log. Malformed input is a warning and the node keeps serving; a taken port is a one-line
error; SIGINT exits 0."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from foxglove_client import Client, connect, free_port, protobuf_class
from helpers import RosProbe, wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import Bool, String

from hapo_interfaces import topics
from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.images import fill_image
from hapo_interfaces.records import EpisodeMessage, ExecutedStep, encode_event, fill_action, fill_step
from hapo_ros.qos import LATCHED

pytestmark = pytest.mark.graph
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
ACTION = (0.1, -0.2, 0.3, 0.0, 0.05, -0.05, 1.0)
ENTROPY = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 5.5)
STAMP_NS = 1_700_000_000_123_456_789


def two_colour_image() -> np.ndarray:
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :32] = (220, 20, 20)  # left red, right blue: survives JPEG, and shows a BGR/RGB swap
    img[:, 32:] = (20, 20, 220)
    return img


async def until(cond, timeout_s: float, what: str, tick=None) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout_s} s waiting for {what}')
        if tick is not None:
            tick()
        await asyncio.sleep(0.05)


def step(source: ControlSource, frame_id: str | None = None) -> JointState:
    msg = fill_step(JointState(), ExecutedStep(STAMP_NS, ACTION, source))
    if frame_id is not None:
        msg.header.frame_id = frame_id
    return msg


def event(kind: EpisodeEvent, **extra) -> String:
    return String(data=encode_event(EpisodeMessage(kind, STAMP_NS, 'test', extra)))


def test_every_channel_reaches_a_websocket_client_with_its_content(start_node, ros_domain):
    port = free_port()
    node = start_node('hapo_bringup.view_node', params={'port': port, 'image_rate_hz': 20.0, 'status_rate_hz': 20.0,
                                                       'camera_discovery_s': 0.2, 'deadman_button': 4})
    with RosProbe(ros_domain) as probe:
        n = probe.node
        pub = {name: n.create_publisher(cls, topic, qos) for name, cls, topic, qos in (
            ('image', Image, topics.camera_topic('agentview'), qos_profile_sensor_data),
            ('broken', Image, topics.camera_topic('broken'), qos_profile_sensor_data),
            ('cmd', JointState, topics.CMD, RELIABLE), ('action', JointState, topics.POLICY_ACTION, RELIABLE),
            ('entropy', JointState, topics.POLICY_ENTROPY, RELIABLE), ('uncertain', Bool, topics.POLICY_UNCERTAIN, 10),
            ('instruction', String, topics.INSTRUCTION, LATCHED), ('episode', String, topics.EPISODE, RELIABLE),
            ('operator', String, topics.OPERATOR, RELIABLE), ('joy', Joy, topics.JOY, qos_profile_sensor_data),
            ('diag', DiagnosticArray, topics.DIAGNOSTICS, 10))}
        pub['instruction'].publish(String(data='lift the cube'))  # latched: reaches the view whenever it joins
        image = fill_image(Image(), two_colour_image(), STAMP_NS, 'agentview_optical')
        broken = fill_image(Image(), two_colour_image(), STAMP_NS)
        broken.data = broken.data[:100]  # shorter than height * step
        mux = DiagnosticStatus(name='hapo_teleop/mux', values=[KeyValue(key='mode', value='policy')])
        streams = {'image': image, 'broken': broken, 'action': fill_action(JointState(), STAMP_NS, ACTION, 'policy'),
                   'entropy': fill_action(JointState(), STAMP_NS, ENTROPY, 'policy'), 'uncertain': Bool(data=True),
                   'joy': Joy(axes=[0.0] * 8, buttons=[0, 0, 0, 0, 1, 0, 0, 0])}

        def tick(diagnostics: bool = True) -> None:  # the streams a running graph publishes all the time
            for name, msg in streams.items():
                pub[name].publish(msg)
            if diagnostics:
                pub['diag'].publish(DiagnosticArray(status=[mux]))

        async def session() -> Client:
            ws = await connect(port)
            assert ws.subprotocol == 'foxglove.sdk.v1'
            client = Client(ws)
            reader = asyncio.create_task(client.run())
            try:
                await until(lambda: client.channel('/camera/broken/image_raw') is not None, 20,
                            f'the cameras advertised\n{node.log()}', tick)
                await until(lambda: all(p.get_subscription_count() > 0 for p in pub.values()), 10,
                            'the view subscribed to every input', tick)
                await until(lambda: client.received('/camera/agentview/image_raw'), 10, f'an image\n{node.log()}', tick)
                await asyncio.sleep(0.3)  # diagnostics stop: the stopped command below is the newer report
                for msg in (event(EpisodeEvent.START, seed=3), step(ControlSource.POLICY),
                            step(ControlSource.POLICY), event(EpisodeEvent.INTERVENTION_START),
                            step(ControlSource.HUMAN), event(EpisodeEvent.SUCCESS, steps=3), String(data='not json'),
                            step(ControlSource.POLICY, frame_id='bogus'), step(ControlSource.STOPPED)):
                    pub['cmd' if isinstance(msg, JointState) else 'episode'].publish(msg)
                pub['operator'].publish(String(data=json.dumps({'event': 'takeover', 'seed': 3, 'step': 2,
                                                                'reason': 'stall'})))
                want = {'episodes': 1, 'successes': 1, 'success_rate': 1.0, 'steps': 3, 'human_steps': 1,
                        'intervention_ratio': 0.3333, 'interventions': 1, 'hold_steps': 1}
                counter = lambda: (client.json('/hapo/view/counter') or [{}])[-1]  # noqa: E731
                await until(lambda: {k: counter().get(k) for k in want} == want, 10,
                            f'the counter {want}, last {counter()}', lambda: tick(False))
                safety = lambda: (client.json('/hapo/view/safety') or [{}])[-1]  # noqa: E731
                await until(lambda: safety().get('estop_latched') is True, 5, f'e-stop latched: {safety()}',
                            lambda: tick(False))
                await until(lambda: len(client.received('/hapo/view/log')) >= 6, 5,
                            f'the event log: {client.channels}\n{node.log()}', lambda: tick(False))
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                await ws.close()
            return client

        client = asyncio.run(session())

    assert client.server_info['name'] == 'hapo view'
    kinds = {c['topic']: (c['encoding'], c['schemaEncoding'], c['schemaName']) for c in client.channels.values()}
    assert kinds['/hapo/cmd'] == ('cdr', 'ros2msg', 'sensor_msgs/msg/JointState')
    assert kinds['/hapo/policy/uncertain'] == ('cdr', 'ros2msg', 'std_msgs/msg/Bool')
    assert kinds['/camera/agentview/image_raw'] == ('protobuf', 'protobuf', 'foxglove.CompressedImage')
    assert kinds['/hapo/view/counter'][:2] == kinds['/hapo/view/safety'][:2] == ('json', 'jsonschema')
    assert 'MSG: std_msgs/Header' in client.channel('/hapo/cmd')['schema']  # the definition a bag carries

    # images: JPEG of the published size, colours in place, the image's own stamp and frame
    cls = protobuf_class(client.channel('/camera/agentview/image_raw')['schema'], 'foxglove.CompressedImage')
    jpeg = cls.FromString(client.received('/camera/agentview/image_raw')[-1])
    import cv2

    bgr = cv2.imdecode(np.frombuffer(jpeg.data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr.shape == (48, 64, 3) and jpeg.format == 'jpeg' and jpeg.frame_id == 'agentview_optical'
    assert bgr[:, :28, 2].mean() > 180 > bgr[:, :28, 0].mean() and bgr[:, 36:, 0].mean() > 180 > bgr[:, 36:, 2].mean()
    assert jpeg.timestamp.seconds * 10**9 + jpeg.timestamp.nanos == STAMP_NS
    assert client.received('/camera/broken/image_raw') == []

    # forwarded as they came, malformed ones too
    assert [m.header.frame_id for m in client.ros('/hapo/cmd', JointState)] == [
        'policy', 'policy', 'human', 'bogus', 'stopped']
    assert tuple(client.ros('/hapo/policy/action', JointState)[-1].position) == ACTION
    assert tuple(client.ros('/hapo/policy/entropy', JointState)[-1].position) == ENTROPY
    assert client.ros('/hapo/policy/uncertain', Bool)[-1].data is True
    assert client.ros('/hapo/instruction', String)[-1].data == 'lift the cube'
    episode = [m.data for m in client.ros('/hapo/episode', String)]
    assert [json.loads(e)['event'] for e in episode if e != 'not json'] == [
        'start', 'intervention_start', 'success'] and 'not json' in episode
    assert json.loads(client.ros('/hapo/operator', String)[-1].data)['reason'] == 'stall'

    # derived: counter (malformed left out, and counted), safety, event log
    counter = client.json('/hapo/view/counter')[-1]
    bad = counter['malformed']
    assert (bad.pop('/hapo/cmd'), bad.pop('/hapo/episode'), bad.pop('/camera/broken/image_raw') >= 1) == (1, 1, True)
    assert not bad
    assert counter['episode']['seed'] == 3 and counter['last_outcome'] == 'success'
    assert client.json('/hapo/view/safety')[-1] == {'source': 'stopped', 'deadman_held': True, 'joy_fresh': True,
                                                     'estop_latched': True, 'mux_mode': 'policy'}
    log_cls = protobuf_class(client.channel('/hapo/view/log')['schema'], 'foxglove.Log')
    lines = [log_cls.FromString(p).message for p in client.received('/hapo/view/log')]
    assert any(line.startswith('success (test)') for line in lines), lines
    assert any('takeover at step 2 of seed 3: stall' in line for line in lines), lines
    assert any(line.startswith('/hapo/cmd: malformed') for line in lines), lines

    log = node.log()
    for topic in ('/hapo/cmd', '/hapo/episode', '/camera/broken/image_raw'):
        assert f'{topic}: malformed message' in log, log
    assert node.running() and node.stop() == 0


def test_a_taken_port_is_a_one_line_error(start_node):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = start_node('hapo_bringup.view_node', params={'port': port})
        wait_for(lambda: not node.running(), 20, what=f'the view to give up\n{node.log()}')
    assert node.wait(1) == 2
    assert f'view_node: cannot serve on 127.0.0.1:{port}' in node.log() and 'Traceback' not in node.log()


def test_hapo_view_follows_the_mux_deadman_and_stops_on_ctrl_c(ros_domain, tmp_path):
    port = free_port()
    env = {**os.environ, 'ROS_DOMAIN_ID': str(ros_domain)}
    cli = [sys.executable, '-m', 'hapo_bringup.cli', 'view']
    bad = subprocess.run([*cli, 'mux_node.deadman_button:=99'], env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and 'deadman_button' in bad.stderr
    log = (tmp_path / 'view.log').open('w+')
    proc = subprocess.Popen([*cli, '--port', str(port), 'mux_node.deadman_button:=6'], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        with RosProbe(ros_domain) as probe:
            joy = probe.node.create_publisher(Joy, topics.JOY, qos_profile_sensor_data)

            async def session() -> dict:
                client = Client(await connect(port, timeout_s=60))
                reader = asyncio.create_task(client.run())
                safety = lambda: (client.json('/hapo/view/safety') or [{}])[-1]  # noqa: E731
                try:
                    await until(lambda: safety().get('deadman_held') is True, 30, f'the deadman held: {safety()}',
                                lambda: joy.publish(Joy(axes=[0.0] * 8, buttons=[0, 0, 0, 0, 0, 0, 1, 0])))
                finally:
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
                    await client.ws.close()
                return client.server_info

            assert asyncio.run(session())['name'] == 'hapo view'
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log.seek(0)
    text = log.read()
    assert f'serving ws://127.0.0.1:{port}' in text and 'deadman button 6' in text and 'Traceback' not in text, text
