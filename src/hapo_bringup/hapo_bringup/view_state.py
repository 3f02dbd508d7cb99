# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""What the live operator view derives from the graph's topics (``hapo view``): the running episode counter, the
safety state (who drives, deadman held, e-stop latched) and the rate gates that throttle images and warnings.

Plain Python, no ROS, time as an argument (``now_ns``): view_node.py feeds it decoded messages, tests feed it
literals. The counter reads the same two streams the recorder tags episodes with: ``hapo/episode`` events and
``hapo/cmd`` executed steps (records.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import EpisodeMessage, ExecutedStep

DRIVING = (ControlSource.POLICY, ControlSource.HUMAN)  # the steps that move the robot; holds do not


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None  # None (JSON null): nothing to divide yet, not 0 %


class ViewCounter:
    """Episodes, successes, success rate and intervention ratio (human steps / steps) since the view started.

    ``steps`` counts executed driving steps (policy or human, one ``hapo/cmd`` message each); hold commands (source
    none or stopped) are counted apart in ``hold_steps``. An episode is counted at its end event (success, failure,
    abort); a second end event before the next START (two nodes reporting one outcome) is counted as
    ``duplicate_end_events`` only. A view started mid-episode counts that episode's end too, and its steps from
    when the view started.
    """

    def __init__(self):
        self.episodes = self.successes = self.failures = self.aborts = 0
        self.steps = self.human_steps = self.hold_steps = self.interventions = 0
        self.duplicate_end_events = 0
        self.episode_index = 0  # STARTs seen
        self.episode_open = False
        self.episode_seed: int | None = None
        self.episode_steps = self.episode_human_steps = 0
        self.last_outcome = ''
        self._ended = False  # the current episode's end was counted

    def event(self, msg: EpisodeMessage) -> None:
        if msg.event is EpisodeEvent.START:
            self.episode_index += 1
            self.episode_open, self._ended = True, False
            seed = msg.extra.get('seed')
            self.episode_seed = int(seed) if isinstance(seed, int | float) else None
            self.episode_steps = self.episode_human_steps = 0
        elif msg.event is EpisodeEvent.INTERVENTION_START:
            self.interventions += 1
        elif msg.event.terminal:
            if self._ended:
                self.duplicate_end_events += 1
                return
            self._ended, self.episode_open = True, False
            self.episodes += 1
            self.successes += msg.event is EpisodeEvent.SUCCESS
            self.failures += msg.event is EpisodeEvent.FAILURE
            self.aborts += msg.event is EpisodeEvent.ABORT
            self.last_outcome = msg.event.name.lower()

    def step(self, step: ExecutedStep) -> None:
        if step.source not in DRIVING:
            self.hold_steps += 1
            return
        human = step.source is ControlSource.HUMAN
        self.steps += 1
        self.human_steps += human
        self.episode_steps += 1
        self.episode_human_steps += human

    def snapshot(self) -> dict[str, Any]:
        """The ``/hapo/view/counter`` message (COUNTER_SCHEMA)."""
        return {'episodes': self.episodes, 'successes': self.successes, 'failures': self.failures,
                'aborts': self.aborts, 'success_rate': _ratio(self.successes, self.episodes),
                'steps': self.steps, 'human_steps': self.human_steps, 'hold_steps': self.hold_steps,
                'intervention_ratio': _ratio(self.human_steps, self.steps), 'interventions': self.interventions,
                'episode': {'index': self.episode_index, 'open': self.episode_open, 'seed': self.episode_seed,
                            'steps': self.episode_steps, 'human_steps': self.episode_human_steps,
                            'intervention_ratio': _ratio(self.episode_human_steps, self.episode_steps)},
                'last_outcome': self.last_outcome, 'duplicate_end_events': self.duplicate_end_events}


@dataclass
class _Seen:
    value: Any = None
    recv_ns: int = -1  # -1: never


class SafetyState:
    """Who drives (the last executed step's source), whether the deadman is held (the newest Joy, fresh within
    ``joy_timeout_s``, has the mux's deadman button down) and whether the e-stop is latched (the newer of: the last
    executed step was an e-stop hold; the mux's diagnostics say mode 'stopped').

    The deadman index and timeout must be the mux's (graph.py makes the view follow mux_node's parameters).
    """

    def __init__(self, deadman_button: int, joy_timeout_s: float):
        self.deadman_button, self.joy_timeout_ns = int(deadman_button), int(joy_timeout_s * 1e9)
        self._joy, self._cmd, self._mode = _Seen(), _Seen(), _Seen()

    def joy(self, now_ns: int, buttons) -> None:
        b = self.deadman_button
        self._joy = _Seen(bool(b < len(buttons) and buttons[b]), now_ns)

    def command(self, now_ns: int, source: ControlSource) -> None:
        self._cmd = _Seen(source, now_ns)

    def mux_mode(self, now_ns: int, mode: str) -> None:
        """The ``mode`` value of the mux's ``/diagnostics`` status (policy, human, stopped)."""
        self._mode = _Seen(str(mode), now_ns)

    def snapshot(self, now_ns: int) -> dict[str, Any]:
        """The ``/hapo/view/safety`` message (SAFETY_SCHEMA)."""
        fresh = self._joy.recv_ns >= 0 and now_ns - self._joy.recv_ns <= self.joy_timeout_ns
        from_cmd = (self._cmd.recv_ns, self._cmd.value is ControlSource.STOPPED)
        from_mode = (self._mode.recv_ns, self._mode.value == 'stopped')
        latest = max(from_cmd, from_mode)  # the newer report wins; (-1, False) before either came
        return {'source': self._cmd.value.wire if self._cmd.value is not None else 'unknown',
                'deadman_held': bool(fresh and self._joy.value), 'joy_fresh': fresh,
                'estop_latched': latest[1], 'mux_mode': self._mode.value or 'unknown'}


class RateGate:
    """Lets one event through per ``1 / rate_hz`` (images to the view, warnings to the log); 0 Hz lets none."""

    def __init__(self, rate_hz: float):
        self.period_ns = int(1e9 / rate_hz) if rate_hz > 0 else None
        self.last_ns: int | None = None
        self.blocked = 0  # events held back since the last one let through

    def due(self, now_ns: int) -> bool:
        if self.period_ns is None:
            return False
        if self.last_ns is not None and now_ns - self.last_ns < self.period_ns:
            self.blocked += 1
            return False
        # keep the cadence when events come just after the period (30 Hz frames gated to 10 Hz stay 10 Hz)
        late = self.last_ns is not None and now_ns - self.last_ns < 2 * self.period_ns
        self.last_ns = self.last_ns + self.period_ns if late else now_ns
        self.blocked = 0
        return True
