# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Recorder: serialized messages in, one tagged episode bag per episode out (threads, no ROS).

Data flow (``recorder_node`` feeds ``offer`` from raw subscription callbacks)::

    callbacks --offer(topic, raw, recv_ns)--> bounded queue --> writer thread
        hapo/episode  -> decode -> EpisodeGate -> open / close EpisodeWriter
        hapo/cmd      -> decode -> step (stamp, source) -> write + tag (a driving step one step later, see below)
        other topics  -> header stamp read from the CDR bytes -> EpisodeGate.admit -> write
                         (not admitted: kept in a pre-roll, written if a START with an earlier stamp follows)

``offer`` never blocks: past ``queue_size`` waiting messages a new message is dropped and counted for its topic;
episode events and executed steps are small and rare and always queued, since losing one would corrupt the
labels. The pre-roll covers the executor's order: it takes ready subscriptions in creation order, not in
arrival order, so the first step's messages can reach the queue before the START event they belong to. Executed
steps have a pre-roll of their own as deep as the mux's history (``CMD_HISTORY``): a recorder that matches the mux
late (either restarted) gets that history at once, often before the START it belongs to.
Per-topic counters (received, written, dropped, outside an episode) feed ``/diagnostics`` and each episode's
custom_data. A policy command with the stamp of the policy step just kept is the mux sending it again (a lockstep
sim that got no answer asks twice; mux.py) and is kept once. The newest driving (policy/human) step is held back
until the next step or the end of the episode decides it: an end event that gives the episode's step count (a
lockstep sim's) drops a step beyond it, the answer to the final observation, which nothing executes and which can
arrive before the end event (a kill -9 loses that one held step more).

A recorder restarted mid-episode resumes it: ``hapo/episode/latest`` (latched, role ``episode_latest``) brings the
running episode's START, and when the bag of that START is under ``output_root`` cut by the crash, a continuation
bag opens with ``continuation_of`` (that bag's directory name) in its episode info and metadata. A START heard on
both topics is handled once; a latched one for an episode already ended, or older than one handled, is ignored.
"""

from __future__ import annotations

import json
import queue
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import ExecutedStep, RecordError, decode_event, read_step
from hapo_interfaces.topics import CMD_HISTORY
from hapo_recorder.bag_reader import truncated_bag_of
from hapo_recorder.bag_writer import EpisodeWriter, RecorderError, typestore
from hapo_recorder.episode import Close, EpisodeGate, Open
from hapo_recorder.params import RecorderParams

CRITICAL_ROLES = ('episode', 'episode_latest', 'cmd')
DRIVING = (ControlSource.POLICY, ControlSource.HUMAN)
PREROLL = 64  # stamped messages kept while no episode admits them (about 0.3 s of the deploy graph)
WARN_PERIOD_S = 5.0  # at most one warning per topic and kind in this time (a stream of bad messages: one line)


def software_version() -> str:
    try:
        return f'hapo_recorder {version("hapo_recorder")}'
    except PackageNotFoundError:
        return 'hapo_recorder (not installed)'


@dataclass(frozen=True)
class TopicSpec:
    """One recorded topic: absolute name, ROS message type ('pkg/msg/Type') and its role."""

    topic: str
    msgtype: str
    role: str  # 'episode', 'cmd', 'instruction', 'policy_action', 'entropy', 'joint_states', 'camera:<name>', 'extra'


@dataclass
class TopicStats:
    received: int = 0
    dropped: int = 0  # queue full: never reached the writer
    written: int = 0
    outside: int = 0  # received while no episode was open (not recorded, by design)
    resent: int = 0  # hapo/cmd: a policy command sent again for the same observation (kept once)
    malformed: int = 0
    first_ns: int = 0
    last_ns: int = 0
    recent: list[int] = field(default_factory=list)  # receive times in the last rate window

    def rate_hz(self, now_ns: int, window_ns: int = 2_000_000_000) -> float:
        recent = [t for t in self.recent if now_ns - t <= window_ns]
        return len(recent) / (window_ns / 1e9)


def header_stamp_ns(raw: bytes | memoryview) -> int | None:
    """``header.stamp`` of a CDR message whose first field is a std_msgs/Header, read without deserialising."""
    if len(raw) < 12:
        return None
    sec, nanosec = struct.unpack_from('<iI' if raw[1] == 1 else '>iI', raw, 4)  # after the 4-byte encapsulation
    return sec * 1_000_000_000 + nanosec


class Throttle:
    """At most one line per key every ``period_s``; ``__call__`` says whether one may go now (with how many were
    held back since the last), else None."""

    def __init__(self, period_s: float = WARN_PERIOD_S, clock: Callable[[], float] = time.monotonic):
        self.period_s, self.clock = period_s, clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, key: str) -> int | None:
        now = self.clock()
        if key in self._last and now - self._last[key] < self.period_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


class Recorder:
    """Owns the queue, the writer thread and the open episode; thread-safe ``offer`` and ``snapshot``."""

    def __init__(self, specs: list[TopicSpec], params: RecorderParams, log: Callable[[str, str], None]):
        self.params = params
        self.log = log  # log(level, message): level in 'info', 'warn', 'error'
        self.store = typestore()
        self.specs = {s.topic: s for s in specs}
        self.by_role = {s.role: s.topic for s in specs}
        stamped = {s.topic: self._has_header(s.msgtype) for s in specs}
        self._stamped = stamped
        self.stats = {s.topic: TopicStats() for s in specs}
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self.gate = EpisodeGate(int(params.close_grace_s * 1e9))
        self.writer: EpisodeWriter | None = None
        self.episode_index = 0
        self.episodes_written = 0
        self.errors = 0
        self.last_error = ''
        self.last_path = ''
        self._latest_instruction: tuple[bytes, int] | None = None
        self._preroll: deque[tuple[str, bytes, int, int]] = deque(maxlen=PREROLL)  # (topic, raw, recv_ns, stamp)
        self._preroll_steps: deque[tuple[str, bytes, int, int]] = deque(maxlen=CMD_HISTORY)  # hapo/cmd's own
        self._held: tuple[TopicSpec, int, bytes, ExecutedStep] | None = None  # newest driving step, not yet written
        self._last_policy_ns: int | None = None  # stamp of the last policy step kept: a second one is a re-send
        self.policy_id = params.policy_id  # replaced by what the policy node announces on hapo/policy/id
        self._opened_at: dict[str, tuple[int, int]] = {}
        self._newest_start_ns = self._newest_end_ns = -1  # of the START and end events handled (module docstring)
        self._last_log_ns = 0
        self._throttle = Throttle()
        self._stop = object()
        self._thread = threading.Thread(target=self._run, name='recorder-writer', daemon=True)

    def _has_header(self, msgtype: str) -> bool:
        fields = self.store.fielddefs.get(msgtype)
        return bool(fields and fields[1] and fields[1][0][0] == 'header')

    # -- callback side -------------------------------------------------------------------------------------
    def offer(self, topic: str, raw: bytes, recv_ns: int | None = None) -> bool:
        """Queue one serialized message; False if dropped (queue full). Never blocks."""
        recv_ns = time.time_ns() if recv_ns is None else recv_ns
        st = self.stats[topic]
        with self._lock:
            st.received += 1
            st.last_ns = recv_ns
            st.first_ns = st.first_ns or recv_ns
            st.recent.append(recv_ns)
            if len(st.recent) > 4096 or (st.recent and recv_ns - st.recent[0] > 4_000_000_000):
                st.recent = [t for t in st.recent if recv_ns - t <= 2_000_000_000]
            if self.specs[topic].role not in CRITICAL_ROLES and self._queue.qsize() >= self.params.queue_size:
                st.dropped += 1
                return False
        self._queue.put((topic, raw, recv_ns))
        return True

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Drain the queue, close an open episode ('aborted' unless its end event came) and join the thread."""
        if self._thread.is_alive():
            self._queue.put(self._stop)
            self._thread.join(timeout_s)

    def snapshot(self, now_ns: int | None = None) -> dict[str, Any]:
        """Counters for diagnostics: per topic and for the recorder."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            topics = {t: {'received': s.received, 'written': s.written, 'dropped': s.dropped,
                          'outside_episode': s.outside, 'malformed': s.malformed, 'resent': s.resent,
                          'rate_hz': round(s.rate_hz(now_ns), 2)} for t, s in self.stats.items()}
        return {'topics': topics, 'queue': self._queue.qsize(), 'episode_open': self.writer is not None,
                'episodes_written': self.episodes_written, 'errors': self.errors, 'last_error': self.last_error,
                'bag': str(self.writer.path) if self.writer else self.last_path}

    # -- writer thread -------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.05)
            except queue.Empty:
                item = None
            if item is self._stop:
                for action in self.gate.shutdown():
                    self._do(action)
                return
            if item is not None:
                self._handle(*item)
            for action in self.gate.tick(time.monotonic_ns()):
                self._do(action)
            if self.writer is not None:
                self._guard(self.writer.maybe_flush)

    def _handle(self, topic: str, raw: bytes, recv_ns: int) -> None:
        spec, st = self.specs[topic], self.stats[topic]
        log_ns = self._last_log_ns = max(recv_ns, self._last_log_ns + 1)  # bag order == arrival order
        if spec.role == 'instruction':
            self._latest_instruction = (raw, log_ns)  # transient local: arrives once, before the episode
        if spec.role in ('episode', 'episode_latest'):
            try:
                event = decode_event(self.store.deserialize_cdr(raw, spec.msgtype).data)
            except (RecordError, ValueError, KeyError, struct.error) as exc:
                with self._lock:
                    st.malformed += 1
                self._warn(topic, f'malformed episode event on {topic} dropped: {exc}')
                return
            start = event.event is EpisodeEvent.START
            if spec.role == 'episode_latest':
                if not start or event.stamp_ns <= max(self._newest_start_ns, self._newest_end_ns):
                    return  # an end (no episode runs: the next START comes on hapo/episode), or one we know of
                spec = self.specs[self.by_role['episode']]  # recorded where the START belongs
            elif start and event.stamp_ns <= self._newest_start_ns:
                return  # heard on hapo/episode/latest first
            if start:
                self._newest_start_ns = event.stamp_ns
            elif event.event.terminal:
                self._newest_end_ns = max(self._newest_end_ns, event.stamp_ns)
            terminal = event.event.terminal
            if terminal:
                self._write(spec, log_ns, raw)  # the end event goes into the episode it ends
            for action in self.gate.on_event(event, time.monotonic_ns()):
                self._do(action)
            if not terminal:
                self._write(spec, log_ns, raw)
            if event.event == EpisodeEvent.START and self.writer is not None:
                self._replay_preroll(event.stamp_ns)
            return
        stamp = header_stamp_ns(raw) if self._stamped[topic] else None
        step = self._step(spec, raw) if spec.role == 'cmd' else None
        if step is not None and step.source is ControlSource.POLICY and step.stamp_ns == self._last_policy_ns:
            with self._lock:  # the mux sent the same policy command again (a lockstep sim asked twice): one step
                st.resent += 1
            return
        driving = step is not None and step.source in DRIVING and self.writer is not None
        if driving:
            admitted = self.gate.admit_step(stamp, self.writer.driving_steps + (self._held is not None))
        else:
            admitted = self.gate.admit(stamp)
        if not admitted:
            if stamp is not None:
                (self._preroll_steps if spec.role == 'cmd' else self._preroll).append((topic, raw, recv_ns, stamp))
            with self._lock:
                st.outside += 1
            return
        if spec.role != 'cmd':
            self._write(spec, log_ns, raw)
            return
        self._write_held()
        if driving:  # holds between the two sends do not part them
            self._last_policy_ns = step.stamp_ns if step.source is ControlSource.POLICY else None
        if driving:
            self._held = (spec, log_ns, raw, step)  # written by the next step, or decided at close
        else:
            self._write_step(spec, log_ns, raw, step)

    def _write_step(self, spec: TopicSpec, log_ns: int, raw: bytes, step: ExecutedStep | None) -> None:
        if self._write(spec, log_ns, raw) and step is not None:
            self.writer.add_step(step.stamp_ns, int(step.source))

    def _write_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self._write_step(*held)

    def _step(self, spec: TopicSpec, raw: bytes) -> ExecutedStep | None:
        """The executed step of a ``hapo/cmd`` message; None (logged: recorded but not tagged) if malformed."""
        try:
            return read_step(self.store.deserialize_cdr(raw, spec.msgtype))
        except (RecordError, ValueError, KeyError, struct.error) as exc:
            with self._lock:
                self.stats[spec.topic].malformed += 1
            self._warn(spec.topic, f'malformed executed step on {spec.topic} recorded but not tagged: {exc}')
            return None

    def _warn(self, key: str, text: str) -> None:
        held = self._throttle(key)
        if held is not None:
            self.log('warn', text + (f' ({held} more since the last warning)' if held else ''))

    def _replay_preroll(self, start_ns: int) -> None:
        """Record the pre-roll messages stamped at or after the episode's start, in arrival order."""
        early = sorted((m for m in (*self._preroll, *self._preroll_steps) if m[3] >= start_ns), key=lambda m: m[2])
        self._preroll.clear()
        self._preroll_steps.clear()
        for topic, raw, recv_ns, _ in early:
            with self._lock:
                self.stats[topic].outside -= 1
            self._handle(topic, raw, recv_ns)

    def _write(self, spec: TopicSpec, log_ns: int, raw: bytes) -> bool:
        if self.writer is None or not self._guard(self.writer.write, spec.topic, spec.msgtype, log_ns, raw):
            return False
        with self._lock:
            self.stats[spec.topic].written += 1
        return True

    def _guard(self, fn: Callable, *args: Any) -> bool:
        """Run a writer call; on RecorderError log one line, abort the episode, keep the node up."""
        try:
            fn(*args)
            return True
        except RecorderError as exc:
            self.errors += 1
            self.last_error = str(exc)
            self.log('error', f'{exc}; episode aborted, recorder continues')
            self._held = None
            if self.writer is not None:
                self.writer.abort()
                self.last_path = str(self.writer.path or '')
            self.writer = None
            return False

    def _do(self, action: Open | Close) -> None:
        if isinstance(action, Open):
            self._open(action)
        elif self.writer is not None:
            self._close(action)

    def _open(self, action: Open) -> None:
        extra = action.start.extra
        p = self.params
        self.episode_index += 1
        cameras = {s.role.split(':', 1)[1]: s.topic for s in self.specs.values() if s.role.startswith('camera:')}
        topics = {role: topic for role, topic in self.by_role.items() if not role.startswith('camera:')}
        instruction = str(extra.get('instruction', ''))
        if not instruction and self._latest_instruction is not None:
            instruction = self.store.deserialize_cdr(self._latest_instruction[0], 'std_msgs/msg/String').data
        info = {'task': str(extra.get('task', '')), 'instruction': instruction, 'seed': extra.get('seed', ''),
                'demo': bool(extra.get('demo', False)), 'k': p.k,
                'policy_id': str(extra.get('policy_id') or self.policy_id),
                'input_device': str(extra.get('input_device') or p.input_device),
                'software_version': software_version(), 'start_ns': action.start.stamp_ns,
                'control_rate_hz': extra.get('control_rate_hz', ''),  # a sim's (export-lerobot's fps); '' unknown
                'topics': {**topics, 'cameras': cameras}}
        first = truncated_bag_of(p.output_root, action.start.stamp_ns) if Path(p.output_root).is_dir() else None
        if first is not None:
            info['continuation_of'] = first.name
        writer = EpisodeWriter(p.output_root, info, self.episode_index, chunk_size_bytes=p.chunk_size_bytes,
                               flush_period_ns=int(p.flush_period_s * 1e9))
        try:
            path = writer.open(action.start.stamp_ns)
        except RecorderError as exc:
            self.errors += 1
            self.last_error = str(exc)
            self.log('error', f'{exc}; episode {self.episode_index} not recorded, recorder continues')
            return
        self.writer = writer
        with self._lock:
            self._opened_at = {t: (s.received, s.dropped) for t, s in self.stats.items()}
        if self._latest_instruction is not None and 'instruction' in self.by_role:
            self._write(self.specs[self.by_role['instruction']], self._latest_instruction[1],
                        self._latest_instruction[0])
        self.log('info', f'episode {self.episode_index} recording to {path} (task {info["task"]!r}, '
                         f'demo={info["demo"]}, k={p.k})' + (f'; it continues {first.name}, cut when the recorder '
                                                             'stopped' if first is not None else ''))

    def _close(self, action: Close) -> None:
        if self._held is not None and action.steps is not None and self.writer.driving_steps >= action.steps:
            topic, self._held = self._held[0].topic, None  # answers the final observation: never executed
            with self._lock:
                self.stats[topic].outside += 1
        self._write_held()
        if self.writer is None:  # the held step's write failed: the episode is aborted
            return
        writer, self.writer = self.writer, None
        with self._lock:
            counts = {t: {'received': s.received - self._opened_at.get(t, (0, 0))[0],
                          'written': writer.counts.get(t, 0),
                          'dropped': s.dropped - self._opened_at.get(t, (0, 0))[1]}
                      for t, s in self.stats.items()}
        custom = {'topic_counts': counts, 'dropped_total': sum(c['dropped'] for c in counts.values()),
                  'reason': action.reason}
        if writer.info.get('continuation_of'):
            custom['continuation_of'] = writer.info['continuation_of']
        if not writer.info.get('policy_id') and self.policy_id:  # announced after the episode started
            custom['policy_id'] = self.policy_id
        try:
            data = writer.close(action.outcome, custom)
        except RecorderError as exc:
            self.errors += 1
            self.last_error = str(exc)
            self.log('error', f'{exc}; episode aborted, recorder continues')
            return
        self.episodes_written += 1
        self.last_path = str(writer.path)
        self.log('info', f'episode closed: {writer.path} outcome={action.outcome} steps={data["steps"]} '
                         f'interventions={data["interventions"]} labels={json.dumps(data["label_counts"])} '
                         f'dropped={custom["dropped_total"]}')
