# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Recorder benchmark: prints one JSON object.

    python bench/bench_recorder.py            # 60 s live run
    python bench/bench_recorder.py --quick    # 10 s live run, 1 capacity repeat

Live: a separate publisher process sends two 224x224 rgb8 cameras at 30 Hz, joint states at 100 Hz and policy
action + executed step at 30 Hz for ``--seconds`` inside one episode to the real recorder_node over DDS; we
report recorded/published per topic, drops, the recorder's CPU share (/proc/<pid>/stat) and MB/s written.
Capacity: the same message mix (same CDR bytes), unpaced, through the Recorder pipeline (queue + writer thread +
EpisodeWriter) against ``rosbags`` writing it directly, in the same run: MB/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CAMS = ('agentview', 'wrist')
RATES = {'image': 30.0, 'joints': 100.0, 'action': 30.0}


def publish(seconds: float) -> int:
    """Publisher process: one episode of the bench message mix; prints the published counts as JSON."""
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    from hapo_interfaces import topics as tp
    from hapo_interfaces.enums import ControlSource, EpisodeEvent
    from hapo_interfaces.images import fill_image
    from hapo_interfaces.records import EpisodeMessage, ExecutedStep, encode_event, fill_action, fill_step
    from hapo_ros.qos import EXECUTED

    rclpy.init()
    node = Node('bench_publisher')
    rel = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    cams = {c: node.create_publisher(Image, tp.camera_topic(c), qos_profile_sensor_data) for c in CAMS}
    joints = node.create_publisher(JointState, tp.JOINT_STATES, qos_profile_sensor_data)
    action = node.create_publisher(JointState, tp.POLICY_ACTION, rel)
    cmd = node.create_publisher(JointState, tp.CMD, EXECUTED)
    episode = node.create_publisher(String, tp.EPISODE, rel)
    pubs = [*cams.values(), joints, action, cmd, episode]
    deadline = time.monotonic() + 30
    while any(p.get_subscription_count() == 0 for p in pubs) and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)
    frames = [np.random.default_rng(i).integers(0, 255, (224, 224, 3), dtype=np.uint8) for i in range(4)]
    episode.publish(String(data=encode_event(EpisodeMessage(EpisodeEvent.START, time.time_ns(), 'bench',
                                                            {'task': 'bench'}))))
    counts = {'image': 0, 'joints': 0, 'action': 0}
    t0 = time.monotonic()
    next_at = dict.fromkeys(counts, t0)
    while (now := time.monotonic()) < t0 + seconds:
        stamp = time.time_ns()
        if now >= next_at['image']:
            for i, pub in enumerate(cams.values()):
                pub.publish(fill_image(Image(), frames[(counts['image'] + i) % 4], stamp))
            counts['image'] += 1
            next_at['image'] += 1 / RATES['image']
        if now >= next_at['joints']:
            joints.publish(fill_action(JointState(), stamp, np.zeros(7)))
            counts['joints'] += 1
            next_at['joints'] += 1 / RATES['joints']
        if now >= next_at['action']:
            action.publish(fill_action(JointState(), stamp, np.full(7, 0.1)))
            cmd.publish(fill_step(JointState(), ExecutedStep(stamp, (0.1,) * 7, ControlSource.POLICY)))
            counts['action'] += 1
            next_at['action'] += 1 / RATES['action']
        time.sleep(max(0.0, min(next_at.values()) - time.monotonic()))
    time.sleep(0.2)
    episode.publish(String(data=encode_event(EpisodeMessage(EpisodeEvent.SUCCESS, time.time_ns(), 'bench'))))
    time.sleep(1.0)
    print(json.dumps({'/camera/agentview/image_raw': counts['image'], '/camera/wrist/image_raw': counts['image'],
                      '/robot/joint_states': counts['joints'], '/hapo/policy/action': counts['action'],
                      '/hapo/cmd': counts['action'], 'seconds': seconds}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


def cpu_ticks(pid: int) -> int:
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15 of stat(5))


def live(seconds: float, tmp: Path) -> dict:
    from hapo_recorder.bag_reader import list_episodes, read_episode

    env = dict(os.environ, PYTHONUNBUFFERED='1', ROS_DOMAIN_ID=os.environ.get('ROS_DOMAIN_ID', '42'),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    root = tmp / 'live'
    rec = subprocess.Popen([sys.executable, '-m', 'hapo_recorder.recorder_node', '--ros-args', '-p',
                            f'output_root:={root}', '-p', "cameras:=['agentview','wrist']"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(2.0)
        pub = subprocess.Popen([sys.executable, __file__, '--publish', '--seconds', str(seconds)], env=env,
                               stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not root.exists() and pub.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        c0, w0 = cpu_ticks(rec.pid), time.monotonic()
        out, _ = pub.communicate(timeout=seconds + 90)
        c1, w1 = cpu_ticks(rec.pid), time.monotonic()
        published = json.loads(out.strip().splitlines()[-1])
        for _ in range(100):
            bags = list_episodes([root]) if root.exists() else []
            if bags and (bags[0] / 'metadata.yaml').exists():
                break
            time.sleep(0.1)
    finally:
        os.killpg(rec.pid, signal.SIGINT)
        rec.wait(30)
    ep = read_episode(bags[0], decode_images=False)
    counts = ep.metadata['topic_counts']
    size = sum(f.stat().st_size for f in bags[0].iterdir())
    per_topic = {t: {'published': n, 'recorded': counts[t]['written'], 'dropped': counts[t]['dropped'],
                     'ratio': round(counts[t]['written'] / n, 4)} for t, n in published.items() if t in counts}
    return {'seconds': seconds, 'topics': per_topic, 'dropped_total': ep.metadata['dropped_total'],
            'recorder_cpu_share': round((c1 - c0) / os.sysconf('SC_CLK_TCK') / (w1 - w0), 3),
            'mb_written': round(size / 1e6, 1), 'mb_per_s': round(size / 1e6 / seconds, 2),
            'labels_ok': ep.labels.tolist() == [1] * len(ep.sources)}


def message_mix(seconds: float) -> list[tuple[str, str, bytes]]:
    """The bench mix as (topic, msgtype, CDR bytes) in publishing order, serialized with the rosbags typestore."""
    from hapo_recorder.bag_writer import typestore

    ts = typestore()
    t = ts.types

    def hdr(ns, frame=''):
        return t['std_msgs/msg/Header'](stamp=t['builtin_interfaces/msg/Time'](sec=ns // 10**9, nanosec=ns % 10**9),
                                        frame_id=frame)

    def js(ns, frame=''):
        m = t['sensor_msgs/msg/JointState'](header=hdr(ns, frame), name=['x', 'y', 'z', 'roll', 'pitch', 'yaw',
                                                                          'gripper'],
                                            position=np.full(7, 0.1), velocity=np.zeros(0), effort=np.zeros(0))
        return ts.serialize_cdr(m, 'sensor_msgs/msg/JointState')

    img = np.random.default_rng(0).integers(0, 255, 224 * 224 * 3, dtype=np.uint8)
    out, t0 = [], time.time_ns()
    for i in range(int(seconds * 100)):
        ns = t0 + i * 10_000_000
        out.append(('/robot/joint_states', 'sensor_msgs/msg/JointState', js(ns)))
        if i % 10 in (0, 3, 7):  # 30 Hz
            for c in CAMS:
                m = t['sensor_msgs/msg/Image'](header=hdr(ns), height=224, width=224, encoding='rgb8',
                                               is_bigendian=0, step=672, data=img)
                raw = ts.serialize_cdr(m, 'sensor_msgs/msg/Image')
                out.append((f'/camera/{c}/image_raw', 'sensor_msgs/msg/Image', raw))
            out.append(('/hapo/policy/action', 'sensor_msgs/msg/JointState', js(ns)))
            out.append(('/hapo/cmd', 'sensor_msgs/msg/JointState', js(ns, 'policy')))
    return out


def capacity(seconds: float, tmp: Path, repeats: int) -> dict:
    from rosbags.rosbag2 import StoragePlugin, Writer

    from hapo_interfaces.enums import EpisodeEvent
    from hapo_interfaces.params import from_mapping
    from hapo_interfaces.records import EpisodeMessage, encode_event
    from hapo_recorder.bag_reader import list_episodes, read_episode
    from hapo_recorder.bag_writer import typestore
    from hapo_recorder.params import RecorderParams
    from hapo_recorder.recorder import Recorder, TopicSpec

    ts = typestore()
    start_ns = time.time_ns()  # the START precedes every message of the mix (the recorder drops earlier stamps)
    mix = message_mix(seconds)
    nbytes = sum(len(m[2]) for m in mix)
    topics = sorted({(m[0], m[1]) for m in mix})

    def event(kind, stamp_ns=None, **extra):
        msg = EpisodeMessage(kind, stamp_ns or time.time_ns(), 'b', extra)
        s = ts.types['std_msgs/msg/String'](data=encode_event(msg))
        return ts.serialize_cdr(s, 'std_msgs/msg/String')

    def run_rosbags(path):
        t0 = time.perf_counter()
        with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as w:
            conns = {tp: w.add_connection(tp, mt, typestore=ts) for tp, mt in topics}
            for i, (tp, _mt, raw) in enumerate(mix):
                w.write(conns[tp], i + 1, raw)
        return time.perf_counter() - t0

    def run_recorder(root):
        roles = {'/hapo/cmd': 'cmd', '/hapo/policy/action': 'policy_action', '/robot/joint_states': 'joint_states'}
        specs = [TopicSpec('/hapo/episode', 'std_msgs/msg/String', 'episode')]
        specs += [TopicSpec(tp, mt, roles.get(tp, 'camera:' + tp.split('/')[2])) for tp, mt in topics]
        params = from_mapping(RecorderParams, {'output_root': str(root), 'queue_size': 10**6, 'close_grace_s': 0.0})
        rec = Recorder(specs, params, lambda level, text: None)
        rec.start()
        t0 = time.perf_counter()
        rec.offer('/hapo/episode', event(EpisodeEvent.START, start_ns, task='cap'))
        for tp, _mt, raw in mix:
            rec.offer(tp, raw)
        rec.offer('/hapo/episode', event(EpisodeEvent.SUCCESS))
        rec.stop(timeout_s=600)
        return time.perf_counter() - t0, rec

    # check: the pipeline writes every message of the mix, labels intact
    _dt, rec = run_recorder(tmp / 'check')
    ep = read_episode(list_episodes([tmp / 'check'])[0], decode_images=False)
    n_cmd = sum(1 for m in mix if m[0] == '/hapo/cmd')
    if len(ep.sources) != n_cmd or sum(ep.topic_counts.values()) != len(mix) + 2:  # + START, SUCCESS
        print(json.dumps({'error': 'capacity check failed', 'steps': len(ep.sources), 'expected': n_cmd}))
        sys.exit(1)
    run_rosbags(tmp / 'warm')  # warm-up
    rb, rc = [], []
    for r in range(repeats):
        rb.append(run_rosbags(tmp / f'rb{r}'))
        rc.append(run_recorder(tmp / f'rc{r}')[0])
        for p in (tmp / f'rb{r}', tmp / f'rc{r}'):
            shutil.rmtree(p)
    mb = nbytes / 1e6
    rosbags_mbps, recorder_mbps = mb / float(np.median(rb)), mb / float(np.median(rc))
    return {'messages': len(mix), 'mb': round(mb, 1), 'repeats': repeats,
            'rosbags_direct_mb_per_s': round(rosbags_mbps, 1), 'recorder_pipeline_mb_per_s': round(recorder_mbps, 1),
            'ratio': round(recorder_mbps / rosbags_mbps, 3),
            'rosbags_s': [round(x, 3) for x in rb], 'recorder_s': [round(x, 3) for x in rc]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--seconds', type=float, default=60.0, help='live run length (s)')
    ap.add_argument('--quick', action='store_true', help='10 s live run, 1 capacity repeat')
    ap.add_argument('--repeats', type=int, default=3, help='capacity repeats (median reported)')
    ap.add_argument('--publish', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.publish:
        return publish(args.seconds)
    seconds, repeats = (10.0, 1) if args.quick else (args.seconds, args.repeats)
    tmp = Path(tempfile.mkdtemp(prefix='bench_recorder_'))
    try:
        result = {'bench': 'recorder', 'cpus': os.cpu_count(), 'live': live(seconds, tmp),
                  'capacity': capacity(min(seconds, 10.0), tmp, repeats)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    live_ok = result['live']['dropped_total'] == 0 and all(v['ratio'] == 1.0 for v in result['live']['topics'].values())
    result['goals'] = {'live_100pct_zero_drops': live_ok, 'capacity_ratio_ge_0_5': result['capacity']['ratio'] >= 0.5}
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
