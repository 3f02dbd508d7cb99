# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Fault matrix of the real deploy graph, group ``kill``: each node killed with SIGKILL mid-episode, then restarted.

    .venv/bin/python bench/faults.py [--repeats 3] [--quick] [--operator]

One graph (lockstep sim, a fresh 64 px policy, mux, our joy_node reading a FIFO the bench writes as the kernel
would, recorder), one episode per case (started with the sim's reset service); then the graph of ``operator:=true``
(the simulated operator holds the joystick, joy_node off; ``--operator``: only this one), its operator_node killed
while it drives (the fresh policy stalls, so it takes over) and, restarted, taking over again in the next episode.
Per case: the node is killed while the policy drives (joy_node, operator_node: while the human drives), what
reaches ``hapo/cmd`` is timed, the node is restarted as a supervisor would, and the time until the policy drives
again is measured. At the end every episode bag is read back and compared with the steps seen on the wire. Per node:

* ``time_to_safe_s``: kill -> the first command on hapo/cmd not from the dead source (policy_node, joy_node: a hold;
  operator_node: in lockstep the sim waits unanswered, then the policy's command, the hand-back; goal the mux's
  timeout plus one mux tick), or -> the last command (mux_node: the stream stops; the robot side zeroes
  after its own ``cmd_timeout_s``, 0.1 s for servo_executor, benched by bench_servo), or n/a (sim_node: the robot
  is gone; recorder_node: commands go on, the largest gap between two is reported);
* ``stale_after_safe``: commands of the killed source after the robot was safe (goal 0);
* ``steps_lost``: driving steps the sim executed in that episode (the count in its end event; where the sim died,
  the commands answered by a later observation) that the episode's bags lack (goal 0). For the recorder the bag is
  truncated: ``steps_lost_before_kill`` against ``steps_lost_bound`` (its ``flush_period_s`` in steps; what waits
  in its queue on a busy machine comes on top), the rest were executed while it was down: the restarted recorder
  continues the running episode in a bag linked to the cut one (``resumed_s``: restart -> that bag; else
  ``starts_until_recording``: the episodes it took to record again);
* ``cmds_not_in_bag_after_restart_s``: driving commands of that episode seen on the wire after the restart that no
  bag holds, by seconds after the restart (the answer to the final observation, which nothing executes, is one);
* ``recovered_s``: restart -> the next policy command (the recorder: -> a bag open again).

Baseline in the same run: the median command period while the policy drives. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import isolate, report
from helpers import RosProbe, wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState, Joy
from std_msgs.msg import String
from std_srvs.srv import Trigger

from hapo_bringup.graph import config_dir, resolve
from hapo_bringup.runner import GraphRunner
from hapo_interfaces import topics
from hapo_interfaces.enums import ControlSource as S
from hapo_interfaces.enums import EpisodeEvent
from hapo_interfaces.records import decode_event, read_step
from hapo_interfaces.stamps import to_ns
from hapo_recorder.bag_reader import BagError, list_episodes, read_episode
from hapo_teleop.joystick import AXIS, BUTTON, INIT, pack

NODES = ('policy_node', 'joy_node', 'mux_node', 'recorder_node', 'sim_node')
HUMAN_NODES = ('joy_node', 'operator_node')  # killed while the human drives
DRIVING = (S.POLICY, S.HUMAN)
RELIABLE = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)


class Gamepad:
    """The kernel side of joy_node's device: a FIFO the bench writes Linux joystick events into."""

    def __init__(self, path: Path):
        os.mkfifo(path)
        self.fd = os.open(path, os.O_RDWR)
        self.init()

    def init(self) -> None:  # what the kernel sends a reader that opens the device
        os.write(self.fd, b''.join(pack(0, BUTTON | INIT, n) for n in range(11)) +
                 b''.join(pack(0, AXIS | INIT, n) for n in range(8)))

    def drive(self, held: bool) -> None:
        """Deadman (button 4) held with the right stick up, or both released."""
        os.write(self.fd, pack(int(held), BUTTON, 4) + pack(-20000 if held else 0, AXIS, 4))


class Wire:
    """What the robot side sees: every hapo/cmd step with its arrival time, and the episode events."""

    def __init__(self, probe: RosProbe):
        self.cmds: list[tuple[float, object]] = []
        self.events: list[object] = []
        self.joys: list[float] = []  # arrival times of joy messages
        self.obs: list[int] = []  # observation stamps (robot/joint_states): a command for T was executed iff one > T
        probe.node.create_subscription(JointState, topics.JOINT_STATES, lambda m: self.obs.append(to_ns(
            m.header.stamp)), RELIABLE)
        probe.node.create_subscription(JointState, topics.CMD, lambda m: self.cmds.append(
            (time.monotonic(), read_step(m))), RELIABLE)
        probe.node.create_subscription(String, topics.EPISODE, lambda m: self.events.append(decode_event(m.data)),
                                       RELIABLE)
        probe.node.create_subscription(Joy, topics.JOY, lambda m: self.joys.append(time.monotonic()),
                                       qos_profile_sensor_data)

    def since(self, t: float) -> list[tuple[float, object]]:
        return [(a, s) for a, s in list(self.cmds) if a >= t]

    def count(self, t: float, source: S) -> int:
        return sum(s.source is source for _, s in self.since(t))


def back(probe: RosProbe, node: str) -> bool:
    """Whether a restarted node is in the graph again; the recorder and the sim once they listen to episode events
    (a recorder that misses the next START loses that episode)."""
    if node in ('recorder_node', 'sim_node'):
        return node in {i.node_name for i in probe.node.get_subscriptions_info_by_topic(f'/{topics.EPISODE}')}
    return node in probe.node.get_node_names()


def resumed(root: Path, t_restart: float, timeout_s: float = 10.0) -> float | None:
    """Seconds from the restart until the restarted recorder opened a bag continuing the episode it came back in
    (``continuation_of`` in the bag's episode info), None if it did not within ``timeout_s``."""
    known = set(root.glob('*_ep*'))
    while time.monotonic() - t_restart < timeout_s:
        for bag in set(root.glob('*_ep*')) - known:
            with contextlib.suppress(BagError):
                if read_episode(bag, decode_images=False).metadata.get('continuation_of'):
                    return round(time.monotonic() - t_restart, 3)
        time.sleep(0.05)
    return None


def recording_again(reset, root: Path, tries: int = 10) -> int:
    """Start episodes until the restarted recorder opens a bag for one; how many it took (a restarted recorder
    ignores the episode it came back in, and can miss a START sent before the sim's writer matched it)."""
    for n in range(1, tries + 1):
        before = len(list(root.glob('*_ep*')))
        reset()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            if len(list(root.glob('*_ep*'))) > before:
                return n
            time.sleep(0.05)
    raise AssertionError(f'the restarted recorder opened no bag in {tries} episodes')


def run_case(node: str, runner: GraphRunner, probe: RosProbe, wire: Wire, reset, pad: Gamepad,
             rates: list[float], root: Path) -> dict:
    starts = sum(e.event is EpisodeEvent.START for e in list(wire.events))
    reset()
    wait_for(lambda: sum(e.event is EpisodeEvent.START for e in list(wire.events)) > starts, 60,
             what=f'{node}: a new episode')
    start_ev = [e for e in list(wire.events) if e.event is EpisodeEvent.START][-1]
    t0 = time.monotonic()
    wait_for(lambda: wire.count(t0, S.POLICY) >= 15, 60, what=f'{node}: the policy driving')
    period = [b - a for (a, _), (b, _) in zip(wire.since(t0), wire.since(t0)[1:], strict=False)]
    rates.append(statistics.median(period))
    source = S.POLICY
    if node == 'joy_node':
        pad.drive(True)
    if node in HUMAN_NODES:  # the operator takes over once the fresh policy stalls
        wait_for(lambda: wire.count(t0, S.HUMAN) >= 10, 60, what=f'{node}: the human driving')
        source = S.HUMAN
    t_kill = time.monotonic()
    runner.kill(node)
    time.sleep(1.5)
    after = wire.since(t_kill)
    row: dict = {'node': node, 'episode_start_ns': start_ev.stamp_ns}
    if node in ('policy_node', *HUMAN_NODES):
        # safe: the first command not from the dead source (a hold; in lockstep with the operator the sim waits
        # unanswered, so the policy's command after the mux's joy timeout, the hand-back)
        others = [a for a, s in after if s.source is not source]
        safe = others[0] if others else None
        row['time_to_safe_s'] = round(safe - t_kill, 3) if safe else None
        row['stale_after_safe'] = sum(s.source is source for a, s in after if safe and a > safe)
        if node in HUMAN_NODES:  # the policy takes over again after the hold: the mux's hand-back
            row['handed_back'] = any(s.source is S.POLICY for _, s in after)
    elif node == 'mux_node':
        row['time_to_safe_s'] = round(after[-1][0] - t_kill, 3) if after else 0.0
        row['stale_after_safe'] = 0 if not after else sum(a > after[-1][0] for a, _ in after)
    elif node == 'recorder_node':
        gaps = [b - a for (a, _), (b, _) in zip(after, after[1:], strict=False)]
        row['time_to_safe_s'] = None
        row['largest_cmd_gap_s'] = round(max(gaps), 3) if gaps else None
    else:
        row['time_to_safe_s'] = None
        row['cmds_after_kill'] = len(after)
    if node == 'joy_node':
        pad.drive(False)
    t_restart = time.monotonic()
    runner.restart(node)
    if node == 'joy_node':
        pad.init()
    # back: the node is in the graph again (a recorder that missed the next START would lose that episode) and the
    # policy drives
    wait_for(lambda: back(probe, node), 90, what=f'{node}: back in the graph after a restart')
    if node == 'operator_node':  # back once it answers observations again (with the policy driving, or itself)
        t_joy = time.monotonic()
        wait_for(lambda: any(a > t_joy for a in list(wire.joys)), 30, what='operator_node: answering again')
    if node == 'recorder_node':  # it continues the running episode (hapo/episode/latest), else the next START
        row['resumed_s'] = resumed(root, t_restart)
        if row['resumed_s'] is not None:
            time.sleep(1.0)  # the continuation records before the episode ends
        row['starts_until_recording'] = 0 if row['resumed_s'] is not None else recording_again(reset, root)
    t_back = time.monotonic()
    wait_for(lambda: wire.count(t_restart, S.POLICY) >= 1, 90, what=f'{node}: the policy driving after a restart')
    first = next(a for a, s in wire.since(t_restart) if s.source is S.POLICY)
    row['recovered_s'] = round(max(first, t_back) - t_restart, 3)
    if node == 'mux_node':  # the episode goes on after the restart, as one does: the recorder, matched with the new
        time.sleep(1.0)  # mux by then, gets its first commands from the history (an episode that ends first: README)
    if node == 'operator_node':  # and in the next episode it takes over the stalling policy again
        t_next = time.monotonic()
        reset()
        wait_for(lambda: wire.count(t_next, S.HUMAN) >= 1, 60, what='operator_node: a takeover after its restart')
        row['takes_over_again'] = True
    row['_t'] = (t0, t_kill, t_restart)
    return row


def steps_lost(rows: list[dict], wire: Wire, root: Path, flush_steps: int) -> None:
    """Per case: driving steps the sim executed in its episode that the episode's bag lacks. Executed: the count
    in the sim's end event of that episode (the reset's abort); where the sim died before one, the driving
    commands answered by a later observation (lockstep). Before the kill and after the restart: by stamp."""
    bags = {}
    for path in list_episodes([root]):
        ep = read_episode(path, decode_images=False)
        start = next((e.stamp_ns for e in ep.events if e.event is EpisodeEvent.START), None)
        bags.setdefault(start, []).append(ep)
    events = sorted(list(wire.events), key=lambda e: e.stamp_ns)
    for row in rows:
        t0, t_kill, t_restart = row.pop('_t')
        begin = row['episode_start_ns']
        end = next((e for e in events if e.stamp_ns > begin and e.origin == 'sim'
                    and (e.event.terminal or e.event is EpisodeEvent.START)), None)
        eps = bags.get(begin, [])
        in_bag = {int(t) for ep in eps for t, src in zip(ep.step_stamps_ns, ep.sources, strict=True)
                  if src in DRIVING}
        until = end.stamp_ns if end is not None else float('inf')
        if end is not None and end.event.terminal and isinstance(end.extra.get('steps'), int):
            executed, row['executed_from'] = end.extra['steps'], 'the sim end event'
        else:
            last_obs = max((t for t in wire.obs if begin <= t < until), default=-1)
            executed = len({s.stamp_ns for _, s in wire.cmds if s.source in DRIVING and begin <= s.stamp_ns < last_obs})
            row['executed_from'] = 'the wire (the sim died)'
        lost = [a for a, s in wire.cmds if s.source in DRIVING and begin <= s.stamp_ns < until
                and s.stamp_ns not in in_bag]
        row['bag'] = 'truncated' if any(ep.truncated for ep in eps) else ('closed' if eps else 'missing')
        row['steps_executed'] = executed
        row['steps_in_bag'] = len(in_bag)
        row['steps_lost'] = max(0, executed - len(in_bag))
        row['steps_lost_before_kill'] = sum(t0 <= a < t_kill for a in lost)
        row['cmds_not_in_bag_after_restart_s'] = [round(a - t_restart, 3) for a in lost if a >= t_restart]
        if row['node'] == 'recorder_node':
            row['steps_lost_bound'] = flush_steps


def _survived(row: dict) -> bool:
    """The graph drove again after the restart and the bag kept what it must (the recorder: all but its bound)."""
    if row.get('recovered_s') is None:
        return False
    if row['node'] == 'recorder_node':
        return row['steps_lost_before_kill'] <= row['steps_lost_bound']
    return row['steps_lost'] == 0


def run_graph(operator: bool, kill: list[str], repeats: int) -> tuple[list[dict], list[float], dict] | None:
    """One graph (``operator:=true`` or the gamepad's), each node of ``kill`` killed ``repeats`` times: the cases
    with their steps lost, the command periods and the graph's parameters; None (reported) if a case did not
    recover."""
    domain = isolate()
    tmp = Path(tempfile.mkdtemp(prefix='hapo-faults-'))
    pad = Gamepad(tmp / 'js0')
    nodes, params = resolve(config_dir() / 'deploy.yaml', [
        'horizon:=100000', 'image_size:=64', 'checkpoint:=', f'output_root:={tmp / "episodes"}',
        f'joy_node.device:={tmp / "js0"}', 'joy_node.reopen_period_s:=0.1', *(['operator:=true'] if operator else [])])
    out = io.StringIO()
    runner = GraphRunner(nodes, params, out=out, env={'ROS_DOMAIN_ID': str(domain)})
    rows: list[dict] = []
    rates: list[float] = []
    with RosProbe(domain, 'bench_faults') as probe:
        wire = Wire(probe)
        client = probe.node.create_client(Trigger, topics.RESET_SERVICE)

        def reset() -> None:
            wait_for(lambda: client.wait_for_service(timeout_sec=0.1), 60, what='the sim reset service')
            future = client.call_async(Trigger.Request())
            wait_for(future.done, 30, what='the sim reset answer')

        runner.start()
        try:
            wait_for(lambda: any(s.source is S.POLICY for _, s in list(wire.cmds)), 120,
                     what=f'the policy to drive; output:\n{out.getvalue()}')
            for _ in range(repeats):
                for node in kill:
                    rows.append(run_case(node, runner, probe, wire, reset, pad, rates, tmp / 'episodes'))
            time.sleep(0.5)
        except AssertionError as exc:
            tail = [f'{a - wire.cmds[0][0]:.2f}s {s.source.name} {s.stamp_ns}' for a, s in list(wire.cmds)[-8:]]
            runner.stop()  # the nodes' exit lines say what each waited for
            print(f'faults: {exc}; last commands: {tail}\n{out.getvalue()[-6000:]}', file=sys.stderr)
            return None
        finally:
            runner.stop()
    flush_steps = int(float(params['recorder_node'].get('flush_period_s', 0.5)) / statistics.median(rates)) + 1
    steps_lost(rows, wire, tmp / 'episodes', flush_steps)
    return rows, rates, params


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=3, help='kills per node (the median is reported)')
    ap.add_argument('--quick', action='store_true', help='one kill per node (CI smoke)')
    ap.add_argument('--operator', action='store_true',
                    help='the graph of operator:=true only; kills operator_node by default')
    ap.add_argument('--nodes', help=f'the nodes to kill, in order, in the gamepad graph only (default '
                                    f'{",".join(NODES)}, then operator_node in the graph of operator:=true)')
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    if args.operator:
        graphs = [(True, (args.nodes or 'operator_node').split(','))]
    else:
        graphs = [(False, (args.nodes or ','.join(NODES)).split(','))]
        graphs += [] if args.nodes else [(True, ['operator_node'])]
    rows: list[dict] = []
    rates: list[float] = []
    for operator, kill in graphs:
        done = run_graph(operator, kill, repeats)
        if done is None:
            return 1
        rows += done[0]
        rates += done[1]
        mux = done[2]['mux_node']
    period = statistics.median(rates)
    joy_timeout = float(mux.get('joy_timeout_s', 0.5))
    goals = {'policy_node': float(mux.get('policy_timeout_s', 0.5)), 'joy_node': joy_timeout,
             'operator_node': joy_timeout, 'mux_node': 0.0}
    tick = 1.0 / float(mux.get('control_rate_hz', 50.0))
    table = {}
    for node in dict.fromkeys(r['node'] for r in rows):
        mine = [r for r in rows if r['node'] == node]
        safe = [r['time_to_safe_s'] for r in mine if r.get('time_to_safe_s') is not None]
        entry = {'kills': len(mine), 'survived': sum(_survived(r) for r in mine),
                 'time_to_safe_s': round(statistics.median(safe), 3) if safe else None,
                 'stale_after_safe': sum(r.get('stale_after_safe', 0) for r in mine),
                 'steps_lost': sum(r['steps_lost'] for r in mine),
                 'recovered_s': round(statistics.median(r['recovered_s'] for r in mine), 3)}
        if node in goals:
            entry['goal_time_to_safe_s'] = round(goals[node] + tick, 3)
            entry['goal_met'] = bool(safe) and max(safe) <= entry['goal_time_to_safe_s'] and entry['steps_lost'] == 0
        table[node] = entry
    report({'bench': 'faults', 'group': 'kill', 'repeats': repeats, 'baseline_cmd_period_s': round(period, 4),
            'mux_tick_s': tick, 'table': table, 'cases': rows})
    unreadable = [r['node'] for r in rows if r['bag'] == 'missing' and r['node'] != 'recorder_node']
    if unreadable:  # every case recovered (else a wait above failed); an episode with no bag is a lost episode
        print(f'correctness check failed: no bag for the episode of the kill of {unreadable}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
