# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Fault matrix, group ``malformed messages`` (issue 14): bad messages published into the real deploy graph.

    .venv/bin/python bench/faults_malformed.py [--quick] [--cases NAME,...]

One graph (lockstep sim, a fresh 64 px policy, mux, recorder; the bench's probe node publishes ``joy`` as a
joystick driver would, 20 Hz, deadman up), one episode per case (the sim's reset service). Per case the probe
publishes ``--messages`` bad messages at 20 Hz (oversized images: 5 at 1 Hz) into a real topic, stamped with the
newest observation (published the moment it arrives, so the mux would act on a policy action before the real
policy's answer):

* ``joy`` (sensor_msgs/Joy): short axes, short buttons, a NaN axis, an inf axis; while the human drives (deadman
  held: the bad messages replace the driver's) and while the policy drives;
* ``hapo/policy/action`` (JointState as policy_node sends it): NaN, inf, out of [-1, 1], wrong names, wrong length;
* ``camera/agentview/image_raw`` (Image): wrong encoding, height vs data size, step, an oversized 4000x4000 rgb8;
* ``hapo/episode`` (String): not JSON, an unknown event.

Per case: ``warnings`` (per node, the WARN lines of the graph's log in the case's window naming the topic),
``one_line`` / ``rate_limited`` (lines per node: 1, and at most a tenth of the messages), ``names_field``,
``alive`` (every node still running, no traceback), ``bad_cmds`` (hapo/cmd steps, subscribed reliable, with a
non-finite or out-of-range value or the bad message's marker value), ``human_replayed`` (human steps while only bad
Joy came: the last good stick replayed), ``drove_again``. At the end every bag is read back (readable, its driving
steps = the sim's count in its end event) and built into a dataset (hapo_trainer.dataset): no non-finite action,
proposal or image of another size may reach the loss, and the bag's skipped messages are reported. Outcome per
case: ``survived`` or ``FOUND: ...``; exits 1 when a case did not survive. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from _common import isolate, report
from helpers import RosProbe, wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState, Joy
from std_msgs.msg import String
from std_srvs.srv import Trigger

from hapo_bringup.graph import config_dir, resolve
from hapo_bringup.runner import GraphRunner
from hapo_interfaces import topics
from hapo_interfaces.enums import ControlSource as S
from hapo_interfaces.enums import EpisodeEvent
from hapo_interfaces.records import RecordError, decode_event, read_step
from hapo_interfaces.stamps import fill, to_ns
from hapo_interfaces.topics import ACTION_DIMS
from hapo_recorder.bag_reader import BagError, list_episodes, read_episode

RELIABLE = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)
CAMERA = 'agentview'
MARK = 0.4242  # the value a bad policy action carries: a command with it came from the bad message
NAN, INF = float('nan'), float('inf')
QUICK = ('joy_nan/held', 'policy_out_of_range', 'image_wrong_step', 'episode_unknown_event')
CONSUMERS = {'joy': ('mux_node',), topics.POLICY_ACTION: ('mux_node',), topics.camera_topic(CAMERA): ('policy_node',),
             topics.EPISODE: ('sim_node', 'recorder_node')}  # the nodes that read the topic: each must warn


@dataclass(frozen=True)
class Case:
    name: str
    topic: str
    fields: tuple[str, ...]  # a warning names one of these
    make: object  # stamp_ns -> message
    held: bool = False  # joy: the human drives when the bad messages start
    n: int = 0  # messages (0: --messages)
    period_s: float = 0.05


def joy(axes, buttons, held: bool) -> Joy:
    b = list(buttons)
    if len(b) > 4:
        b[4] = int(held)
    return Joy(axes=[float(a) for a in axes], buttons=b)


def action(values, names=ACTION_DIMS):
    def make(stamp):
        msg = JointState(name=list(names), position=[float(v) for v in values])
        fill(msg.header.stamp, stamp)
        msg.header.frame_id = 'policy'
        return msg
    return make


def image(height: int, width: int, encoding='rgb8', step=None, size=None):
    def make(stamp):
        data = bytes(size if size is not None else height * (step or width * 3))
        msg = Image(height=height, width=width, encoding=encoding, step=step or width * 3, data=data)
        fill(msg.header.stamp, stamp)
        msg.header.frame_id = CAMERA
        return msg
    return make


def event(text: str):
    return lambda stamp: String(data=text.replace('STAMP', str(stamp)))


def cases() -> list[Case]:
    out = []
    buttons, stick = [0] * 11, [0.0] * 4 + [-0.5] + [0.0] * 3  # an Xbox pad's 11 buttons; right stick up
    for held in (True, False):
        tag = 'held' if held else 'free'
        out += [Case(f'joy_short_axes/{tag}', 'joy', ('axes',), lambda _s, h=held: joy(stick[:2], buttons, h), held),
                Case(f'joy_short_buttons/{tag}', 'joy', ('buttons',), lambda _s: joy(stick, [0, 0, 0], False), held),
                Case(f'joy_nan/{tag}', 'joy', ('axes',), lambda _s, h=held: joy(stick[:4] + [NAN] + stick[5:],
                                                                                 buttons, h), held),
                Case(f'joy_inf/{tag}', 'joy', ('axes',), lambda _s, h=held: joy([0.0, INF] + stick[2:], buttons, h),
                     held)]
    pa = topics.POLICY_ACTION
    out += [Case('policy_nan', pa, ('position',), action([NAN] + [MARK] * 6)),
            Case('policy_inf', pa, ('position',), action([MARK] * 3 + [INF] + [MARK] * 3)),
            Case('policy_out_of_range', pa, ('position',), action([5.0] + [MARK] * 6)),
            Case('policy_wrong_names', pa, ('name',), action([MARK] * 7, [f'joint{i}' for i in range(7)])),
            Case('policy_wrong_length', pa, ('position',), action([MARK] * 6, ACTION_DIMS[:6]))]
    cam = topics.camera_topic(CAMERA)
    out += [Case('image_wrong_encoding', cam, ('encoding',), image(64, 64, '16UC1', step=128)),
            Case('image_height_vs_data', cam, ('height', 'data'), image(128, 64, size=64 * 64 * 3)),
            Case('image_wrong_step', cam, ('step',), image(64, 64, step=100)),
            Case('image_oversized', cam, ('height', 'width', 'size'), image(4000, 4000), n=5, period_s=1.0)]
    ep = topics.EPISODE
    out += [Case('episode_bad_json', ep, ('JSON', 'data'), event('{"event": "start", "stamp_ns": STAMP')),
            Case('episode_unknown_event', ep, ("'event'",),
                 event('{"event": "explode", "stamp_ns": STAMP, "origin": "bench"}'))]
    return out


class Log:
    """GraphRunner's ``out``: the nodes' output lines with their arrival time."""

    WARN = re.compile(r'^\[(\w+)\] \[WARN\] \[[\d.]+\] \[[\w.]+\]: (.*)$')

    def __init__(self):
        self.lines: list[tuple[float, str]] = []

    def write(self, text: str) -> None:
        now = time.monotonic()
        self.lines += [(now, ln) for ln in text.splitlines()]

    def flush(self) -> None:
        pass

    def getvalue(self) -> str:
        return '\n'.join(ln for _, ln in self.lines)

    def warnings(self, topic: str, t0: float, t1: float) -> dict[str, list[str]]:
        named = re.compile(rf'(?<![\w/])/?{re.escape(topic)}(?![\w/])')
        out: dict[str, list[str]] = {}
        for t, ln in list(self.lines):
            m = self.WARN.match(ln)
            if t0 <= t <= t1 and m and named.search(m.group(2)):
                out.setdefault(m.group(1), []).append(m.group(2))
        return out

    def tracebacks(self, t0: float) -> list[str]:
        return [ln for t, ln in list(self.lines) if t >= t0 and 'Traceback (most recent call last)' in ln]


class Probe:
    """The bench's node: the robot side's view of hapo/cmd and the episode, the joystick driver, the bad sender."""

    def __init__(self, probe: RosProbe):
        node = self.node = probe.node
        self.cmds: list[tuple[float, object]] = []
        self.events: list[object] = []
        self.obs_ns = 0
        self._new_obs = threading.Event()
        node.create_subscription(JointState, topics.CMD, lambda m: self.cmds.append((time.monotonic(), read_step(m))),
                                 RELIABLE)
        node.create_subscription(String, topics.EPISODE, self._on_event, RELIABLE)
        node.create_subscription(JointState, topics.JOINT_STATES, self._on_obs, RELIABLE)
        self.pubs = {'joy': node.create_publisher(Joy, topics.JOY, 10),
                     topics.POLICY_ACTION: node.create_publisher(JointState, topics.POLICY_ACTION, 100),
                     topics.camera_topic(CAMERA): node.create_publisher(Image, topics.camera_topic(CAMERA), 10),
                     topics.EPISODE: node.create_publisher(String, topics.EPISODE, 50)}
        self.client = node.create_client(Trigger, topics.RESET_SERVICE)
        self.held = False  # the driver's deadman
        self.driver_on = True
        self._stop = threading.Event()
        self._driver = threading.Thread(target=self._drive, daemon=True)
        self._driver.start()

    def _on_event(self, msg: String) -> None:
        with contextlib.suppress(RecordError):  # our own bad ones
            self.events.append(decode_event(msg.data))

    def _on_obs(self, msg: JointState) -> None:
        self.obs_ns = to_ns(msg.header.stamp)
        self._new_obs.set()

    def _drive(self) -> None:  # a joystick driver's 20 Hz autorepeat: right stick up while the deadman is held
        while not self._stop.wait(0.05):
            if self.driver_on:
                self.pubs['joy'].publish(joy([0.0] * 4 + [-0.5 if self.held else 0.0] + [0.0] * 3, [0] * 11,
                                             self.held))

    def close(self) -> None:
        self._stop.set()
        self._driver.join()

    def reset(self) -> None:
        wait_for(lambda: self.client.wait_for_service(timeout_sec=0.1), 60, what='the sim reset service')
        future = self.client.call_async(Trigger.Request())
        wait_for(future.done, 30, what='the sim reset answer')

    def since(self, t: float, source: S | None = None) -> list:
        return [s for a, s in list(self.cmds) if a >= t and (source is None or s.source is source)]

    def send(self, case: Case, n: int) -> tuple[float, float]:
        """Publish ``n`` bad messages, each stamped with the newest observation, the first of each observation the
        moment it arrives; returns the window (first, last publish)."""
        pub, period = self.pubs[case.topic], case.period_s
        t0 = time.monotonic()
        for i in range(n):
            self._new_obs.clear()
            pub.publish(case.make(self.obs_ns))
            self._new_obs.wait(max(0.0, t0 + (i + 1) * period - time.monotonic()))
        return t0, time.monotonic()


def bad_value(step, marker: bool) -> bool:
    return any(not math.isfinite(v) or abs(v) > 1.0 or (marker and v == MARK) for v in step.action)


def run_case(case: Case, n: int, probe: Probe, runner: GraphRunner, log: Log, min_s: float) -> dict:
    t_case = time.monotonic()
    starts = sum(e.event is EpisodeEvent.START for e in list(probe.events))
    probe.reset()
    wait_for(lambda: sum(e.event is EpisodeEvent.START for e in list(probe.events)) > starts, 60,
             what=f'{case.name}: a new episode')
    start = [e for e in list(probe.events) if e.event is EpisodeEvent.START][-1]
    t_ep = time.monotonic()
    wait_for(lambda: len(probe.since(t_ep, S.POLICY)) >= 5, 60, what=f'{case.name}: the policy driving')
    if case.held:
        probe.held = True
        t_h = time.monotonic()
        wait_for(lambda: len(probe.since(t_h, S.HUMAN)) >= 5, 30, what=f'{case.name}: the human driving')
        probe.driver_on = False  # a broken driver: only its bad messages come
    n = case.n or n
    t0, t1 = probe.send(case, n)
    human = len(probe.since(t0 + 0.15, S.HUMAN)) - len(probe.since(t1, S.HUMAN)) if case.held else 0
    probe.driver_on, probe.held = True, False
    time.sleep(1.0)
    t_back = time.monotonic()
    drove = True
    try:
        wait_for(lambda: len(probe.since(t_back, S.POLICY)) >= 3, 30, what='the policy driving again')
    except AssertionError:
        drove = False
    time.sleep(max(0.0, t_case + min_s - time.monotonic()))  # rclpy's throttles (<= 5 s) forget this case
    warned = log.warnings(case.topic, t0, time.monotonic())
    bad = [s for s in probe.since(t0) if bad_value(s, case.topic == topics.POLICY_ACTION)]
    row = {'case': case.name, 'topic': case.topic, 'messages': n, 'episode_start_ns': start.stamp_ns,
           'warnings': {k: len(v) for k, v in warned.items()},
           'warning_line': next((v[0] for v in warned.values()), None),
           'one_line': bool(warned) and all(len(v) == 1 for v in warned.values()),
           'rate_limited': bool(warned) and all(len(v) <= max(1, n // 10) for v in warned.values()),
           'names_field': bool(warned) and all(any(f in v[0] for f in case.fields) for v in warned.values()),
           'alive': runner.exited() is None and not log.tracebacks(t_case), 'bad_cmds': len(bad),
           'human_replayed': human, 'drove_again': drove}
    found = []
    if not row['alive']:
        found.append(runner.exited() or 'a traceback in the log')
    missing = [c for c in CONSUMERS[case.topic] if c not in warned and case.name != 'image_oversized']
    if missing:
        found.append(f'no warning naming {case.topic} from {missing}')
    if warned and not row['rate_limited']:
        found.append(f'not rate limited: {row["warnings"]} lines for {n} messages')
    if warned and not row['names_field']:
        found.append(f'a warning names no field of {case.fields}')
    if bad:
        found.append(f'{len(bad)} hapo/cmd steps with a bad value, e.g. {bad[0].source.name} {bad[0].action}')
    if human:
        found.append(f'{human} human steps replayed the last good stick while only bad Joy came')
    if not drove:
        found.append('the policy did not drive again')
    row['outcome'] = 'FOUND: ' + '; '.join(found) if found else 'survived'
    return row


def check_bags(rows: list[dict], probe: Probe, root: Path) -> dict:
    """Per case: its bag readable, its driving steps = the sim's count; then the dataset of all bags."""
    from hapo_trainer.config import DataConfig
    from hapo_trainer.dataset import BuildSpec, build_dataset

    bags, unreadable = {}, []
    for path in list_episodes([root]):
        try:
            ep = read_episode(path)
        except BagError as exc:
            unreadable.append(str(exc))
            continue
        start = next((e.stamp_ns for e in ep.events if e.event is EpisodeEvent.START), None)
        bags[start] = ep
    events = sorted(list(probe.events), key=lambda e: e.stamp_ns)
    for row in rows:
        begin = row.pop('episode_start_ns')
        end = next((e for e in events if e.stamp_ns > begin and e.origin == 'sim' and e.event.terminal), None)
        ep = bags.get(begin)
        driving = int(np.isin(ep.sources, [int(S.POLICY), int(S.HUMAN)]).sum()) if ep is not None else None
        executed = end.extra.get('steps') if end is not None else None
        sizes = [tuple(a.shape) for a in ep.images.get(CAMERA, {}).values()] if ep is not None else []
        row['bag'] = {'readable': ep is not None, 'steps_executed': executed, 'driving_steps_in_bag': driving,
                      'skipped': dict(ep.skipped) if ep is not None else {},
                      'images_of_another_size': sum(s != (64, 64, 3) for s in sizes)}
        if row['case'] == 'image_oversized' and not row['bag']['images_of_another_size']:
            row['note'] = 'never delivered: best-effort DDS between processes drops frames over ~0.5 MB'
        problem = ('no readable bag' if ep is None else
                   f'bag has {driving} driving steps, the sim executed {executed}' if driving != executed else '')
        if problem:
            row['outcome'] = (row['outcome'] + '; ' if row['outcome'] != 'survived' else 'FOUND: ') + problem
    spec = BuildSpec(DataConfig(), (CAMERA,), 0, (-1.0,) * 7, (1.0,) * 7)
    ds = build_dataset([root], spec, method=None, cache_dir=root.parent / 'cache', log=lambda _m: None,
                       progress=False)
    proposed = np.isfinite(ds.proposals).all(axis=1)
    partial = int((np.isfinite(ds.proposals).any(axis=1) & ~proposed).sum())
    skipped = {}
    for ep in bags.values():
        for topic, k in ep.skipped.items():
            skipped[topic] = skipped.get(topic, 0) + k
    result = {'samples': len(ds), 'drops': ds.summary.get('drops', {}), 'unreadable_bags': unreadable,
              'image_shape': list(ds.images[CAMERA].shape[1:]),
              'nonfinite_actions': int((~np.isfinite(ds.actions)).sum()), 'partly_nonfinite_proposals': partial,
              'proposals_out_of_range': int((np.abs(ds.proposals[proposed]) > 1.0).any(axis=1).sum()),
              'skipped_in_bags': skipped, 'skips_counted_in_summary': any(t in json.dumps(ds.summary) for t in skipped)}
    result['loss_safe'] = (not unreadable and result['image_shape'] == [64, 64, 3] and not result['nonfinite_actions']
                           and not partial)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help=f'the cases {", ".join(QUICK)}, 20 messages each (CI smoke)')
    ap.add_argument('--messages', type=int, default=50, help='bad messages per case, at 20 Hz (default 50)')
    ap.add_argument('--cases', default='', help='comma-separated case names (default: all)')
    args = ap.parse_args()
    chosen = [c for c in cases() if (c.name in QUICK if args.quick and not args.cases
                                     else not args.cases or c.name in args.cases.split(','))]
    if not chosen:
        ap.error(f'no case named {args.cases!r}; cases: {", ".join(c.name for c in cases())}')
    n = 20 if args.quick else args.messages
    min_s = 2.0 if args.quick else 5.5  # quick: every case at another call site, no throttle to wait out
    domain = isolate()
    tmp = Path(tempfile.mkdtemp(prefix='hapo-malformed-'))
    nodes, params = resolve(config_dir() / 'deploy.yaml', [
        'horizon:=100000', 'image_size:=64', 'checkpoint:=', f'output_root:={tmp / "episodes"}', 'joy:=false'])
    log = Log()
    runner = GraphRunner(nodes, params, out=log, env={'ROS_DOMAIN_ID': str(domain), 'RCUTILS_COLORIZED_OUTPUT': '0'})
    rows: list[dict] = []
    t_start = time.monotonic()
    with RosProbe(domain, 'bench_malformed') as ros:
        probe = Probe(ros)
        runner.start()
        try:
            wait_for(lambda: any(s.source is S.POLICY for _, s in list(probe.cmds)), 120,
                     what=f'the policy to drive; output:\n{log.getvalue()[-3000:]}')
            for case in chosen:
                rows.append(run_case(case, n, probe, runner, log, min_s))
            probe.reset()  # the last case's episode ends (its step count)
            time.sleep(0.5)
        except AssertionError as exc:
            print(f'faults_malformed: {exc}\n{log.getvalue()[-4000:]}', file=sys.stderr)
            return 1
        finally:
            probe.close()
            runner.stop()
    dataset = check_bags(rows, probe, tmp / 'episodes')
    for row in rows:
        row['survived'] = row['outcome'] == 'survived'
    report({'bench': 'faults', 'group': 'malformed', 'messages': n, 'wall_s': round(time.monotonic() - t_start, 1),
            'survived': sum(r['survived'] for r in rows), 'cases': rows, 'dataset': dataset})
    return 0 if all(r['survived'] for r in rows) and dataset['loss_safe'] else 1


if __name__ == '__main__':
    sys.exit(main())
