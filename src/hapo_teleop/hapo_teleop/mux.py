# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The intervention mux as a pure state machine: who drives the robot, and what is sent.

Modes: POLICY (policy actions pass through) <-> HUMAN (deadman held: joystick deltas) and
STOPPED (e-stop, latched until the reset button). Time is an argument (``now_ns``), so tests
drive it exactly. Fail-safe rules (the failure modes reported for teleop_twist_joy/twist_mux):

- every input is stale until its first message and after its timeout; a Joy message the
  mapping cannot use counts as absent, and while the human drives it turns their commands into holds (every tick)
  until a usable one comes (the last good stick is not replayed; the deadman's timeout still hands back); a hold
  answers no observation, so the human or, after the hand-back, the policy still answers the one it held on;
- a policy action must be in [-1, 1] per dimension (``records.ACTION_LIMIT``), else it is refused (counted);
- a policy action stamped more than ``policy_timeout_s`` ahead of the mux clock is refused (counted: a camera
  clock that jumped ahead would otherwise lock every later action out as older than it); without ``lockstep``
  so is one stamped more than ``policy_timeout_s`` before it: computed from a stale observation (a starved
  policy waking up, a frozen camera repeating its stamp), it would move the arm for a scene long gone;
- a hold command goes out on every hand-back, and on *every* tick while no valid source exists
  (not once: a lost message must not leave the robot moving);
- hold = zero motion with the gripper kept at its last executed value (a zero gripper command
  would half-open a closed gripper and drop the object);
- a policy action is executed at most once and never for an observation older than one already
  acted upon (so a slow policy cannot replay an old action after a hand-back); in ``lockstep`` the one exception
  is a sim that publishes the observation again (it got no answer: the command was lost, e.g. sent by a mux
  restarted before the sim's subscription matched it): the same policy command goes out again, which the sim
  executes at most once per observation and the recorder keeps once.

In ``lockstep`` mode (simulators that step once per command) the human's command is emitted once
per new observation stamp, carrying that stamp; otherwise once per control tick. Which Joy answers
observation ``t`` in lockstep: a stamped Joy (``header.stamp`` > 0) only if stamped at or after ``t``
(input made before the observation was published cannot answer it), and then at once; so a scripted
operator that stamps its Joy with the observation it computed it from is paired with exactly that
observation, and a joystick driver (stamped with its clock, republished at its autorepeat rate) answers
with the first input after the observation. An unstamped Joy answers the newest observation on the next tick.
With ``lockstep_operator`` (a simulated operator that answers every observation, deadman up while it watches)
a policy action for ``t`` also waits for the operator's Joy for ``t``: the operator's choice for ``t`` (watch
or take over) always decides, whichever message came first.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.params import ParamError, param
from hapo_interfaces.topics import ACTION_DIM
from hapo_teleop.joy_mapping import JoyError, JoyInput, JoyMapping

_JOY = JoyMapping()  # the joystick defaults live in JoyMapping; MuxParams declares them as parameters


class Mode(enum.Enum):
    POLICY = 'policy'
    HUMAN = 'human'
    STOPPED = 'stopped'


@dataclass(frozen=True)
class MuxParams:
    """Parameters of mux_node (config/deploy.yaml, config/joy/*.yaml)."""

    control_rate_hz: float = param(50.0, 'rate of the timer that handles staleness and human commands',
                                   unit='Hz', lo=1.0, hi=1000.0, read_only=True)
    policy_timeout_s: float = param(0.5, 'policy actions received longer ago than this are stale: hold is sent '
                                         'instead; one stamped further ahead of the mux clock, or without '
                                         'lockstep further behind it, is refused',
                                    unit='s', lo=0.01, hi=10.0, read_only=True)
    joy_timeout_s: float = param(0.5, 'Joy older than this is stale: the human loses control (hand-back)',
                                 unit='s', lo=0.01, hi=10.0, read_only=True)
    lockstep: bool = param(True, 'one human command per new observation stamp (lockstep sim); false: one '
                                 'per tick (real robot)', read_only=True)
    lockstep_operator: bool = param(False, 'lockstep with a simulated operator that answers every observation with '
                                           'a Joy stamped with it (deadman up: the policy drives it): a policy '
                                           'action waits for that Joy, so who drives an observation never depends '
                                           'on which message came first (same seeds, same bags)', read_only=True)
    initial_gripper: float = param(-1.0, 'gripper value held before any command was executed (-1 open)',
                                   lo=-1.0, hi=1.0, read_only=True)
    axis_map: list = param(list(_JOY.axis_map), 'Joy axis index for x y z roll pitch yaw (-1: unmapped)')
    axis_scale: list = param(list(_JOY.axis_scale), 'scale per motion dim (sign flips); '
                             'the action is a controller input in [-1, 1]')
    deadzone: float = param(_JOY.deadzone, 'axis magnitude below which input is zero', lo=0.0, hi=0.99)
    deadman_button: int = param(_JOY.deadman_button, 'held: the human drives (Xbox LB)', lo=0, hi=63, read_only=True)
    estop_button: int = param(_JOY.estop_button, 'press: e-stop, latched (Xbox B)', lo=0, hi=63, read_only=True)
    estop_reset_button: int = param(_JOY.estop_reset_button, 'press: release a latched e-stop (Xbox start)',
                                    lo=0, hi=63, read_only=True)
    gripper_button: int = param(_JOY.gripper_button, 'press while driving: toggle gripper open/closed (Xbox A)',
                                lo=-1, hi=63)
    success_button: int = param(_JOY.success_button, 'press: episode success (Xbox Y)', lo=-1, hi=63)
    failure_button: int = param(_JOY.failure_button, 'press: episode failure (Xbox X)', lo=-1, hi=63)
    next_button: int = param(_JOY.next_button, 'press: abort this episode, start the next (Xbox back)', lo=-1, hi=63)

    def mapping(self) -> JoyMapping:
        """The joystick layout; ParamError (one line, naming the parameter) if it is inconsistent."""
        try:
            return self._mapping()
        except ValueError as exc:
            raise ParamError(f'joystick mapping: {exc}') from None

    def _mapping(self) -> JoyMapping:
        values = {f.name: getattr(self, f.name) for f in fields(JoyMapping)}  # same names
        return JoyMapping(**{**values, 'axis_map': tuple(int(i) for i in self.axis_map),
                             'axis_scale': tuple(float(s) for s in self.axis_scale)})


@dataclass(frozen=True)
class PolicyInput:
    """A policy proposal: the stamp of the observation it answers and the 7-D action."""

    stamp_ns: int
    action: tuple[float, ...]


@dataclass(frozen=True)
class Command:
    """One executed command: what goes on ``hapo/cmd``."""

    stamp_ns: int
    action: tuple[float, ...]
    source: ControlSource


@dataclass
class Decision:
    """What one ``step`` call asks the node to publish, in order."""

    commands: list[Command] = field(default_factory=list)
    events: list[tuple[EpisodeEvent, dict]] = field(default_factory=list)
    mode: Mode = Mode.POLICY


class MuxLogic:
    """The mux state machine; see the module docstring for the rules."""

    def __init__(self, params: MuxParams):
        self.p = params
        self.mapping = params.mapping()
        self.timeout_policy_ns = int(params.policy_timeout_s * 1e9)
        self.timeout_joy_ns = int(params.joy_timeout_s * 1e9)
        self.mode = Mode.POLICY
        self.latched = False
        self.policy: PolicyInput | None = None
        self.policy_recv_ns = 0
        self.joy: JoyInput | None = None
        self.joy_recv_ns = 0
        self.obs_stamp_ns: int | None = None
        self.acted_stamp_ns = -1  # stamp of the last policy/human command: never act on older
        self.last_policy: Command | None = None  # the last policy command sent (lockstep: sent again if asked)
        self.gripper = float(params.initial_gripper)
        self.human_gripper = self.gripper
        self.counts = {'policy_forwarded': 0, 'human_commands': 0, 'hold_commands': 0, 'estop_commands': 0,
                       'late_policy_actions': 0, 'bad_joy_messages': 0, 'interventions': 0, 'policy_resent': 0,
                       'refused_policy_stamps': 0}
        self.last_joy_error = ''
        self.last_policy_error = ''  # why the newest refused policy action was refused (the node warns with it)
        self.joy_bad = False  # the newest Joy was malformed: while driving, hold instead of replaying the last good

    def step(self, now_ns: int, policy: PolicyInput | None = None, joy: JoyInput | None = None,
             obs_stamp_ns: int | None = None, tick: bool = False) -> Decision:
        """Take the inputs that arrived at ``now_ns`` (any may be None) and decide what to send."""
        out = Decision()
        resend = (self.p.lockstep and obs_stamp_ns is not None and obs_stamp_ns == self.obs_stamp_ns
                  and self.last_policy is not None and self.last_policy.stamp_ns == obs_stamp_ns)
        if obs_stamp_ns is not None and (self.obs_stamp_ns is None or obs_stamp_ns > self.obs_stamp_ns):
            self.obs_stamp_ns = obs_stamp_ns
        if policy is not None:
            self._take_policy(now_ns, policy)
        pressed = self._take_joy(now_ns, joy, out) if joy is not None else set()

        mode = self._mode(now_ns)
        entering = mode != self.mode
        if entering:
            if self.mode is Mode.HUMAN:
                out.events.append((EpisodeEvent.INTERVENTION_END, {}))
                self._hold(out, now_ns, ControlSource.NONE)  # hand-back: hold before the policy resumes
            if mode is Mode.HUMAN:
                out.events.append((EpisodeEvent.INTERVENTION_START, {}))
                self.counts['interventions'] += 1
                self.human_gripper = 1.0 if self.gripper > 0 else -1.0
            self.mode = mode
        out.mode = mode

        if mode is Mode.STOPPED:
            if tick or entering:
                self._hold(out, now_ns, ControlSource.STOPPED)
        elif mode is Mode.HUMAN:
            if self.mapping.gripper_button in pressed:
                self.human_gripper = -self.human_gripper
            stamp = self.obs_stamp_ns if self.obs_stamp_ns is not None else now_ns
            if self.joy_bad:  # still the human's turn (no hand-back mid-correction), but no stick to replay
                if tick or entering:  # a hold answers no observation (a lockstep sim waits for a driving one)
                    self._hold(out, now_ns, ControlSource.NONE)
            elif self._human_due(stamp, tick or entering):
                action = (*self.mapping.motion(self.joy), self.human_gripper)
                self._emit(out, Command(stamp, action, ControlSource.HUMAN))
                self.counts['human_commands'] += 1
        elif resend and not entering and self.acted_stamp_ns == self.last_policy.stamp_ns:
            self._emit(out, self.last_policy)  # the sim asks again: the answer it did not get
            self.counts['policy_resent'] += 1
        elif self._policy_fresh(now_ns):
            if self.policy.stamp_ns > self.acted_stamp_ns and self._operator_let(now_ns, self.policy.stamp_ns):
                self.last_policy = Command(self.policy.stamp_ns, self.policy.action, ControlSource.POLICY)
                self._emit(out, self.last_policy)
                self.counts['policy_forwarded'] += 1
        elif tick and not out.commands:
            self._hold(out, now_ns, ControlSource.NONE)  # no valid source: hold on every tick
        return out

    def _human_due(self, stamp_ns: int, tick: bool) -> bool:
        """Whether the human's command for the observation ``stamp_ns`` goes out now (module docstring)."""
        if not self.p.lockstep:
            return tick
        if stamp_ns <= self.acted_stamp_ns:
            return False  # answered already
        if self.joy.stamp_ns:
            return self.joy.stamp_ns >= stamp_ns
        return tick

    def _operator_let(self, now_ns: int, stamp_ns: int) -> bool:
        """``lockstep_operator``: whether the operator has answered observation ``stamp_ns`` (a fresh Joy stamped at
        or after it; a silent operator holds nothing up)."""
        if not (self.p.lockstep and self.p.lockstep_operator) or not self._joy_fresh(now_ns):
            return True
        return self.joy.stamp_ns >= stamp_ns

    def _take_policy(self, now_ns: int, policy: PolicyInput) -> None:
        age_s = (now_ns - policy.stamp_ns) / 1e9
        if -age_s > self.p.policy_timeout_s or (not self.p.lockstep and age_s > self.p.policy_timeout_s):
            self.counts['refused_policy_stamps'] += 1
            self.last_policy_error = (f'header.stamp {abs(age_s):.3f} s {"ahead of" if age_s < 0 else "behind"} '
                                      f'the mux clock (policy_timeout_s {self.p.policy_timeout_s}): refused')
            return
        if self.policy is not None and policy.stamp_ns == self.policy.stamp_ns:
            if self.p.lockstep:
                # the policy answered a republished observation again: it is alive and its proposal current (else
                # a proposal that went stale waiting for the operator's answer would hold the sim for ever)
                self.policy_recv_ns = now_ns
            return
        if self.policy is not None and policy.stamp_ns < self.policy.stamp_ns:
            self.counts['late_policy_actions'] += 1
            return
        self.policy, self.policy_recv_ns = policy, now_ns

    def _take_joy(self, now_ns: int, joy: JoyInput, out: Decision) -> set[int]:
        """Store a usable Joy; return the buttons that went down since the previous one."""
        try:
            self.mapping.check(joy)
        except JoyError as exc:
            self.counts['bad_joy_messages'] += 1
            self.last_joy_error, self.joy_bad = str(exc), True
            return set()
        self.joy_bad = False
        prev = self.joy.buttons if self.joy is not None else ()
        pressed = {i for i, b in enumerate(joy.buttons) if b and not (i < len(prev) and prev[i])}
        self.joy, self.joy_recv_ns = joy, now_ns
        m = self.mapping
        if m.estop_button in pressed:
            self.latched = True
        elif m.estop_reset_button in pressed and self.latched:
            self.latched = False
        for button, event, reason in ((m.success_button, EpisodeEvent.SUCCESS, 'operator'),
                                      (m.failure_button, EpisodeEvent.FAILURE, 'operator'),
                                      (m.next_button, EpisodeEvent.ABORT, 'next')):
            if button >= 0 and button in pressed:
                out.events.append((event, {'reason': reason}))
        return pressed

    def _mode(self, now_ns: int) -> Mode:
        if self.latched:
            return Mode.STOPPED
        if self._joy_fresh(now_ns) and self.mapping.pressed(self.joy, self.mapping.deadman_button):
            return Mode.HUMAN
        return Mode.POLICY

    def _joy_fresh(self, now_ns: int) -> bool:
        return self.joy is not None and now_ns - self.joy_recv_ns <= self.timeout_joy_ns

    def _policy_fresh(self, now_ns: int) -> bool:
        return self.policy is not None and now_ns - self.policy_recv_ns <= self.timeout_policy_ns

    def _emit(self, out: Decision, cmd: Command) -> None:
        out.commands.append(cmd)
        self.acted_stamp_ns = max(self.acted_stamp_ns, cmd.stamp_ns)
        self.gripper = cmd.action[-1]

    def hold(self, now_ns: int, source: ControlSource = ControlSource.NONE) -> Command:
        """The hold command: zero motion, gripper kept, stamped with the current observation (else ``now_ns``)."""
        stamp = self.obs_stamp_ns if self.obs_stamp_ns is not None else now_ns
        return Command(stamp, (0.0,) * (ACTION_DIM - 1) + (self.gripper,), source)

    def _hold(self, out: Decision, now_ns: int, source: ControlSource) -> None:
        out.commands.append(self.hold(now_ns, source))
        self.counts['estop_commands' if source is ControlSource.STOPPED else 'hold_commands'] += 1
