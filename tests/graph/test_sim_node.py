# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""sim_node as a real process over DDS: lockstep stepping, stale commands, episodes, reset, signals."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from helpers import RosProbe, wait_for
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from hapo_interfaces import topics
from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import EpisodeMessage, ExecutedStep, decode_event, encode_event, fill_action, fill_step
from hapo_interfaces.stamps import to_ns

NODE = 'hapo_sim.sim_node'
UP = (0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
START_S = 60.0  # robosuite import + model build on 2 busy cores


class Probe(RosProbe):
    """A test-side node in its own Context, spun in a thread; records everything the sim publishes."""

    def __init__(self, domain: int, camera: str = 'agentview'):
        super().__init__(domain, 'probe')
        self.__enter__()
        self.lock = threading.Lock()
        self.images: list[int] = []
        self.joints: dict[int, JointState] = {}
        self.objects: dict[int, dict[str, float]] = {}
        self.events = []
        self.instructions: list[str] = []
        n = self.node
        n.create_subscription(Image, topics.camera_topic(camera),
                              lambda m: self._add(self.images, to_ns(m.header.stamp)), qos_profile_sensor_data)
        n.create_subscription(JointState, topics.JOINT_STATES, self._on_joints, 10)
        n.create_subscription(JointState, topics.OBJECT_STATE, self._on_objects, 10)
        n.create_subscription(String, topics.EPISODE, lambda m: self._add(self.events, decode_event(m.data)), 50)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        n.create_subscription(String, topics.INSTRUCTION, lambda m: self._add(self.instructions, m.data), latched)
        self.cmd = n.create_publisher(JointState, topics.CMD, 10)
        self.episode = n.create_publisher(String, topics.EPISODE, 50)
        self.reset = n.create_client(Trigger, topics.RESET_SERVICE)

    def _add(self, target: list, item) -> None:
        with self.lock:
            target.append(item)

    def _on_joints(self, m: JointState) -> None:
        with self.lock:
            self.joints[to_ns(m.header.stamp)] = m

    def _on_objects(self, m: JointState) -> None:
        with self.lock:
            self.objects[to_ns(m.header.stamp)] = dict(zip(m.name, m.position, strict=True))

    def latest_complete(self) -> int | None:
        """Newest stamp seen on the image, joint and object topics alike."""
        with self.lock:
            common = set(self.images) & set(self.joints) & set(self.objects)
        return max(common) if common else None

    def newest_objects(self) -> tuple[int, dict[str, float]]:
        with self.lock:
            stamp = max(self.objects)
            return stamp, self.objects[stamp]

    def send(self, stamp_ns: int, action=UP, source: ControlSource = ControlSource.POLICY) -> None:
        self.cmd.publish(fill_step(JointState(), ExecutedStep(stamp_ns, tuple(action), source)))

    def event_kinds(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(e.event.name, e.origin) for e in self.events]


@pytest.fixture
def probe(ros_domain):
    p = Probe(ros_domain)
    yield p
    p.close()


def first_observation(probe: Probe) -> int:
    wait_for(lambda: probe.latest_complete() is not None, START_S, what='first image + joint + object state')
    return probe.latest_complete()


def test_lockstep_steps_once_per_answered_observation(start_node, probe):
    sim = start_node(NODE, params={'cameras': ['agentview'], 'image_size': 64, 'republish_s': 0.5})
    t0 = first_observation(probe)
    assert len(probe.joints[t0].position) == 9
    z0 = probe.objects[t0]['eef_pos.z']
    assert 'cube_pos.x' in probe.objects[t0]
    wait_for(lambda: probe.instructions == ['lift the cube'], 15, what='latched instruction')
    start = next(e for e in probe.events if e.event is EpisodeEvent.START)
    assert (start.origin, start.extra['seed'], start.extra['episode'], start.extra['task']) == ('sim', 0, 0, 'lift')

    # Wrong stamp, hold sources and malformed commands: no step (republished copies keep stamp t0).
    probe.send(t0 - 1)
    probe.send(t0 + 1)
    probe.send(t0, source=ControlSource.NONE)
    probe.send(t0, source=ControlSource.STOPPED)
    probe.cmd.publish(fill_action(JointState(), t0, [0.0] * 6, 'policy'))
    probe.cmd.publish(fill_action(JointState(), t0, [float('nan')] * 7, 'policy'))
    wait_for(lambda: 'ignored bad' in sim.log(), 10, what='bad command warning')
    wait_for(lambda: probe.images.count(t0) >= 2, 15, what='republished observation')
    assert probe.latest_complete() == t0

    # The matching command steps exactly once; the arm goes up.
    probe.send(t0)
    wait_for(lambda: probe.latest_complete() != t0, 10, what='observation after the step')
    t1 = probe.latest_complete()
    assert t1 > t0
    assert probe.objects[t1]['eef_pos.z'] > z0 + 0.002  # the first step from rest moves a few mm
    probe.send(t0)  # answering the old observation again is stale
    probe.send(t1)
    wait_for(lambda: (probe.latest_complete() or 0) > t1, 10, what='second step')
    t2 = probe.latest_complete()
    assert probe.objects[t2]['eef_pos.z'] > probe.objects[t1]['eef_pos.z']
    assert sim.running()
    sim.signal(signal.SIGINT)
    assert sim.wait(10) == 0
    counts = sim.log().rsplit('sim_node: commands', 1)[1]
    for part in ("'stale': 2", "'unknown': 1", "'hold': 2", "'step': 2", 'bad 2'):  # t0 - 1 and t0 again are stale
        assert part in counts, counts


def test_reset_service_and_operator_outcome(start_node, probe):
    sim = start_node(NODE, params={'cameras': ['agentview'], 'image_size': 64, 'seed': 10})
    t0 = first_observation(probe)
    assert probe.reset.wait_for_service(timeout_sec=10)
    future = probe.reset.call_async(Trigger.Request())
    wait_for(future.done, 10, what='reset response')
    assert future.result().success and future.result().message == 'episode 1 seed 11'
    wait_for(lambda: ('ABORT', 'sim') in probe.event_kinds(), 15, what='abort event')
    abort = next(e for e in probe.events if e.event is EpisodeEvent.ABORT)
    assert abort.extra['reason'] == 'reset'
    wait_for(lambda: (probe.latest_complete() or 0) > t0, 10, what='observation of the new episode')

    # The operator (origin mux) declares success: the sim starts episode 2 itself, without a second outcome.
    probe.episode.publish(String(data=encode_event(EpisodeMessage(EpisodeEvent.SUCCESS, 1, 'mux'))))
    wait_for(lambda: sum(e.event is EpisodeEvent.START for e in probe.events) == 3, 10, what='third START')
    starts = [e.extra['seed'] for e in probe.events if e.event is EpisodeEvent.START]
    assert starts == [10, 11, 12]
    assert [k for k in probe.event_kinds() if k[1] == 'sim'] == [
        ('START', 'sim'), ('ABORT', 'sim'), ('START', 'sim'), ('START', 'sim')]
    sim.signal(signal.SIGINT)
    assert sim.wait(10) == 0


def test_first_episode_waits_for_the_named_subscriber(start_node, probe):
    """wait_for: no START (and no observation) until the named node subscribes hapo/episode; then exactly one."""
    sim = start_node(NODE, params={'image_size': 64, 'wait_for': ['late_recorder'], 'wait_timeout_s': 120.0})
    wait_for(lambda: "episode 0 starts once ['late_recorder']" in sim.log(), START_S, what='the sim waiting')
    time.sleep(1.0)
    assert probe.events == [] and probe.images == [], 'the sim started before late_recorder subscribed'
    with RosProbe(probe.domain_id, 'late_recorder') as late:
        seen = []
        late.node.create_subscription(String, topics.EPISODE, lambda m: seen.append(decode_event(m.data)), 50)
        wait_for(lambda: seen, 15, what='START delivered to the late subscriber')
        assert [(e.event, e.extra['episode']) for e in seen] == [(EpisodeEvent.START, 0)]
    first_observation(probe)
    assert probe.event_kinds() == [('START', 'sim')]
    sim.signal(signal.SIGINT)
    assert sim.wait(10) == 0


def test_wait_for_times_out_with_a_warning(start_node, probe):
    sim = start_node(NODE, params={'image_size': 64, 'wait_for': ['nobody'], 'wait_timeout_s': 1.0})
    first_observation(probe)
    assert "['nobody'] not subscribed to hapo/episode after 1 s; starting anyway" in sim.log()
    sim.signal(signal.SIGINT)
    assert sim.wait(10) == 0


def test_horizon_failure_then_idle_and_sigterm(start_node, probe):
    sim = start_node(NODE, params={'cameras': ['agentview'], 'image_size': 32, 'horizon': 2,
                                   'max_episodes': 1})
    t = first_observation(probe)
    for _ in range(2):
        probe.send(t)
        wait_for(lambda t=t: (probe.latest_complete() or 0) > t, 10, what='step')
        t = probe.latest_complete()
    wait_for(lambda: ('FAILURE', 'sim') in probe.event_kinds(), 15, what='failure at horizon')
    failure = next(e for e in probe.events if e.event is EpisodeEvent.FAILURE)
    assert failure.extra['reason'] == 'horizon'
    probe.send(t)  # idle: nothing more happens
    wait_for(lambda: "max_episodes=1 done" in sim.log(), 15, what='idle log')
    assert sum(e.event is EpisodeEvent.START for e in probe.events) == 1
    sim.signal(signal.SIGTERM)
    assert sim.wait(10) == 0


def test_realtime_mode_holds_without_commands(start_node, probe):
    sim = start_node(NODE, params={'cameras': ['agentview'], 'image_size': 32, 'mode': 'realtime',
                                   'control_rate_hz': 10.0})
    t0 = first_observation(probe)
    wait_for(lambda: probe.newest_objects()[0] > t0 + 4 * 80_000_000, 10, what='timer-driven observations')
    with probe.lock:
        zs = [o['eef_pos.z'] for o in probe.objects.values()]
    assert max(zs) - min(zs) < 0.01  # zero action: the arm holds
    # Fresh commands (any stamp: real time does not match stamps) drive the arm up.
    z_before = probe.newest_objects()[1]['eef_pos.z']
    for _ in range(15):
        probe.send(probe.newest_objects()[0])
        time.sleep(0.05)
    wait_for(lambda: probe.newest_objects()[1]['eef_pos.z'] > z_before + 0.03, 15, what='arm moving up')
    sim.signal(signal.SIGINT)
    assert sim.wait(10) == 0


def test_bad_parameter_exits_nonzero(start_node):
    sim = start_node(NODE, params={'mode': 'fast'})
    assert sim.wait(60) == 2
    assert "parameter mode='fast' not one of" in sim.log()


def test_scenario_variation_reaches_the_topics(start_node, probe, repo_root):
    scenario = repo_root / 'config' / 'scenarios' / 'lift_distractor.yaml'
    start_node(NODE, params={'scenario': str(scenario), 'cameras': ['agentview'], 'image_size': 32})
    t0 = first_observation(probe)
    names = set(probe.objects[t0])
    assert {'cube_pos.x', 'distractor_pos.x', 'distractor_pos.y', 'distractor_pos.z'} <= names, names


def test_scenario_of_another_task_exits_with_one_line(start_node, repo_root):
    scenario = repo_root / 'config' / 'scenarios' / 'pick_place_can.yaml'
    sim = start_node(NODE, params={'scenario': str(scenario)})  # task stays lift
    assert sim.wait(60) == 2
    assert f"sim_node: {scenario}: task: 'pick_place_can', but the sim runs task 'lift'" in sim.log()
