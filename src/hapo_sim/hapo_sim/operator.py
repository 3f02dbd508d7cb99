# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""A simulated operator: watches the policy drive and takes over with the joystick when it is about to fail (no ROS).

It behaves like the person of the method (DESIGN.md): hands off while the policy does well; when a failure
predicate fires it waits ``reaction_steps`` observations, holds the deadman and drives with the scripted expert's
actions through the same joystick mapping a person uses (``JoyEncoder``: axes, deadzone, gripper toggle), so the
mux and the recorder see a person's intervention; it hands back once the expert has recovered the situation (its
``handback_phase``), at most ``max_takeovers`` times per episode. With ``ask_for_help`` it also takes over when
the policy's uncertainty flag rises (ThriftyDAgger's "ask for help"), replayed over the policy's entropies of the
observations it watches. ``operator_node`` wires this to topics::

    robot/object_state (t) + hapo/cmd (the command executed for the previous observation)
        [+ hapo/policy/entropy (t), when watching with ask_for_help]
        --> FailureWatch --> Joy stamped t: deadman up (watch) or held with the expert's action (drive) --> mux

Every observation gets exactly one answer, stamped with it, and the mux (``lockstep_operator``) lets the policy
drive ``t`` only after that answer: which source drives each step depends on the states and seeds alone.
An observation is answered once its START is known and, after the first of an episode, once the command executed
for the previous one has come (the predicates read it), and, asking for help while watching, once the policy's
entropy for it has come, whatever order the topics arrive in. A message lost on the way heals: the sim republishes
an observation nobody answered, and the policy infers on it again.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from hapo_interfaces.enums import ControlSource
from hapo_interfaces.params import ParamError, param
from hapo_interfaces.records import EpisodeMessage, ExecutedStep
from hapo_policy.uncertainty import HYSTERESIS_NATS, THRESHOLD_NATS, UncertaintyFlag
from hapo_sim.env import Observation, SimError, task_key, unflatten_state
from hapo_sim.episode_index import EpisodeIndex
from hapo_sim.experts import EXPERTS, expert_for
from hapo_sim.joy_expert import ExpertParams
from hapo_teleop.joy_mapping import JoyEncoder, JoyInput

OBJECTS = {'lift': 'cube_pos', 'pick_place_can': 'Can_pos'}  # the object each task's predicates watch
HANDBACK = {'lift': 'lift', 'pick_place_can': 'carry'}  # the expert phase at which the situation counts recovered
REASONS = ('stalled', 'grasp_far', 'dropped', 'drifting', 'uncertain')
LIFT_WEIGHT = 2.0  # progress: metres of object lift count this much against metres of eef-object distance


@dataclass(frozen=True)
class OperatorParams(ExpertParams):
    """Parameters of ``operator_node``: the expert's and joystick ones (ExpertParams), the predicates, the timing."""

    stall_steps: int = param(20, "take over after this many observations without progress (the eef nearing the "
                                 "object, or the object rising, by progress_m)", lo=2, hi=10**5, read_only=True)
    progress_m: float = param(0.01, 'what counts as progress', unit='m', lo=1e-4, hi=1.0, read_only=True)
    grasp_far_m: float = param(0.05, 'take over when the gripper is commanded closed this far from the object',
                               unit='m', lo=0.0, hi=10.0, read_only=True)
    drop_m: float = param(0.03, 'take over when a lifted object falls this far below its highest point',
                          unit='m', lo=0.001, hi=10.0, read_only=True)
    drift_m: float = param(0.12, 'take over when the eef gets this much farther from the object than it has been',
                           unit='m', lo=0.001, hi=10.0, read_only=True)
    reaction_steps: int = param(3, 'observations between a predicate firing and the takeover (the policy drives '
                                   'them)', lo=0, hi=10**4, read_only=True)
    max_takeovers: int = param(2, 'takeovers per episode at most', lo=0, hi=10**4, read_only=True)
    ask_for_help: bool = param(False, 'also take over when the policy asks for help: its uncertainty flag (the '
                                      "largest entropy on hapo/policy/entropy over uncertain_threshold) rises on an "
                                      'observation it watches; reaction_steps later, as for a predicate',
                               read_only=True)
    uncertain_threshold: float = param(THRESHOLD_NATS, "the policy's flag threshold (the graph sets policy_node's)",
                                       unit='nats', lo=0.01, hi=20.0, read_only=True)
    uncertain_hysteresis: float = param(HYSTERESIS_NATS, "the policy's flag hysteresis (the graph sets "
                                                         "policy_node's)", unit='nats', lo=0.0, hi=20.0,
                                        read_only=True)
    handback_phase: str = param('', "hand back when the expert reaches this phase of its task ('' = the task's: "
                                    "lift: lift, pick_place_can: carry)", read_only=True)

    def phase(self) -> str:
        """The hand-back phase; ParamError (one line) if the task's expert has no such phase."""
        key = task_key(self.task)
        name = self.handback_phase or HANDBACK[key]
        phases = [ph.name for ph in EXPERTS[key].PHASES]
        if name not in phases[1:]:
            raise ParamError(f'parameter handback_phase={name!r}: {key} expert phases after the first: {phases[1:]}')
        return name

    def flag(self) -> UncertaintyFlag | None:
        """A fresh flag as policy_node raises it, None without ask_for_help; ParamError for a bad hysteresis."""
        if not self.ask_for_help:
            return None
        try:
            return UncertaintyFlag(self.uncertain_threshold, self.uncertain_hysteresis)
        except ValueError as exc:
            raise ParamError(f'parameters uncertain_threshold/uncertain_hysteresis: {exc}') from None


class FailureWatch:
    """The failure predicates over the observations of one stretch of policy control."""

    def __init__(self, p: OperatorParams, object_key: str):
        self.p, self.key = p, object_key
        self.rebase(None)

    def rebase(self, state: dict[str, np.ndarray] | None) -> None:
        """Start watching afresh from ``state`` (an episode start: None; a hand-back: the state handed back in)."""
        self._z0 = None if state is None else self._z0
        self._best = -np.inf
        self._since = 0
        self._closest = np.inf
        self._top = -np.inf
        if state is not None:
            self.update(state, None)

    def update(self, state: dict[str, np.ndarray], gripper: float | None) -> str | None:
        """Take one observation and the gripper executed just before it (None: nothing executed yet); the reason
        of the first predicate that fires, else None."""
        obj, eef = state[self.key], state['eef_pos']
        dist = float(np.linalg.norm(eef - obj))
        if self._z0 is None:
            self._z0 = float(obj[2])
        lift = float(obj[2]) - self._z0
        progress = LIFT_WEIGHT * lift - dist
        if progress > self._best + self.p.progress_m:
            self._best, self._since = progress, 0
        else:
            self._since += 1
        self._closest = min(self._closest, dist)
        self._top = max(self._top, lift)
        if self._top > self.p.drop_m and lift < self._top - self.p.drop_m:
            return 'dropped'
        if gripper is not None and gripper > 0 and dist > self.p.grasp_far_m:
            return 'grasp_far'
        if dist > self._closest + self.p.drift_m:
            return 'drifting'
        if self._since >= self.p.stall_steps:
            return 'stalled'
        return None


@dataclass(frozen=True)
class Takeover:
    """One takeover or hand-back, for the log and ``hapo/operator``."""

    event: str  # 'takeover' | 'handback'
    seed: int
    step: int  # observation index in the episode
    stamp_ns: int
    reason: str  # why it took over (REASONS); on a hand-back, the reason of that takeover


class SimOperator:
    """The operator of ``p.task`` answering observations with Joy messages; see the module docstring."""

    def __init__(self, p: OperatorParams):
        self.p = p
        key = task_key(p.task)
        self.expert = expert_for(key, p.noise_std)  # SimError for a task without an expert
        self.handback_phase = p.phase()
        self.encoder = JoyEncoder(p.mapping(), p.initial_gripper, size=(p.joy_axes, p.joy_buttons))
        self.watch = FailureWatch(p, OBJECTS[key])
        self.flag = p.flag()
        self.episodes = EpisodeIndex()
        self.last: JoyInput = self.encoder.release(1)
        self.answered_ns = -1
        self._queue: list[tuple[int, dict]] = []  # observations waiting for their START or previous command
        self._gripper: dict[int, float] = {}  # observation stamp -> gripper of the driving command executed for it
        self._entropy: dict[int, list[float]] = {}  # observation stamp -> the policy's entropies (ask_for_help)
        self._episode: tuple[int, int] | None = None  # (START stamp, seed) being answered
        self._prev_ns: int | None = None  # the previous observation answered in this episode
        self.steps = 0
        self.driving = False
        self.reason = ''  # of the takeover pending or under way
        self._countdown = -1  # observations left before a pending takeover (-1: none pending)
        self.takeovers = 0  # in this episode
        self.log: list[Takeover] = []  # every takeover and hand-back, in order
        self.newest_entropy_ns = -1  # of the entropies taken (a stalled graph's exit line names it)
        self.counts = {'answered': 0, 'repeated': 0, 'stale': 0, 'missed_start': 0, 'human_steps': 0, 'entropies': 0,
                       **{f'takeover_{r}': 0 for r in REASONS}}

    def event(self, msg: EpisodeMessage) -> list[JoyInput]:
        """Take an episode event; the messages to publish (answers to observations that waited for it)."""
        self.episodes.add(msg)
        return self._drain()

    def executed(self, step: ExecutedStep) -> list[JoyInput]:
        """Take a command from ``hapo/cmd``; the messages to publish (answers that waited for it)."""
        if step.source in (ControlSource.POLICY, ControlSource.HUMAN):
            self._gripper.setdefault(step.stamp_ns, float(step.action[-1]))
        return self._drain()

    def entropy(self, stamp_ns: int, values) -> list[JoyInput]:
        """Take the policy's per-dimension entropies for an observation (``hapo/policy/entropy``); the messages to
        publish. Ignored without ask_for_help; a repeat (a republished observation) keeps the first."""
        if self.flag is None:
            return []
        self._entropy.setdefault(stamp_ns, [float(v) for v in values])
        self.counts['entropies'] += 1
        self.newest_entropy_ns = max(self.newest_entropy_ns, stamp_ns)
        return self._drain()

    def observe(self, stamp_ns: int, state: dict[str, np.ndarray]) -> list[JoyInput]:
        """Take the privileged state of the observation stamped ``stamp_ns``; the messages to publish."""
        missing = sorted({self.watch.key, 'eef_pos', 'eef_quat'} - set(state))
        if missing:
            raise SimError(f'object state lacks {missing}: is the sim running task {task_key(self.p.task)}?')
        if stamp_ns <= self.answered_ns or any(s == stamp_ns for s, _ in self._queue):
            self.counts['repeated' if stamp_ns == self.answered_ns else 'stale'] += 1
            return [self.last] if stamp_ns == self.answered_ns else []
        bisect.insort(self._queue, (stamp_ns, state), key=lambda item: item[0])
        return self._drain()

    def observe_message(self, stamp_ns: int, names, values) -> list[JoyInput]:
        """``observe`` for the fields of a ``robot/object_state`` JointState."""
        return self.observe(stamp_ns, unflatten_state(list(names), list(values)))

    def waiting(self) -> str:
        """What the oldest unanswered observation waits for (a stalled graph's exit line names it)."""
        if not self._queue:
            return 'nothing'
        stamp = self._queue[0][0]
        episode = self.episodes.episode_of(stamp)
        if episode is None:
            why = 'its START'
        elif episode == self._episode and self._prev_ns is not None and self._prev_ns not in self._gripper:
            why = f'the command executed for {self._prev_ns}'
        elif self._needs_entropy(stamp):
            why = f"the policy's entropy (the newest taken: {self.newest_entropy_ns})"
        else:
            why = 'nothing'
        return f'observation {stamp} waits for {why}'

    def _drain(self) -> list[JoyInput]:
        out: list[JoyInput] = []
        while self._queue:
            stamp, state = self._queue[0]
            episode = self.episodes.episode_of(stamp)
            if episode is None and self.episodes.started_after(stamp):
                self._queue.pop(0)  # its START was missed (a restart) and the sim went on to a later episode
                self.counts['missed_start'] += 1
                continue
            if episode is None:
                break  # its START has not come yet
            if episode != self._episode:
                self._begin(episode)
            elif self._prev_ns is not None and self._prev_ns not in self._gripper:
                break  # the command for the previous observation has not come yet
            if self._needs_entropy(stamp):
                break  # watching, asking for help: the policy's entropy for this observation has not come yet
            self._queue.pop(0)
            out += self._answer(stamp, state, self._gripper.get(self._prev_ns))
        return out

    def _needs_entropy(self, stamp: int) -> bool:
        """Whether the oldest observation ``stamp`` waits for the policy's entropy: watching, asking for help, none
        came yet, and no newer observation is queued. A newer one means the sim went on without this answer (the
        last observation of an episode, followed by the next episode's first): the policy may never infer on it."""
        return self.flag is not None and not self.driving and stamp not in self._entropy and len(self._queue) == 1

    def _begin(self, episode: tuple[int, int]) -> None:
        self._episode, self._prev_ns, self.steps = episode, None, 0
        self.driving, self.reason, self._countdown, self.takeovers = False, '', -1, 0
        self.watch.rebase(None)
        self.flag = self.p.flag()
        self._gripper = {s: g for s, g in self._gripper.items() if s > episode[0]}
        self._entropy = {s: e for s, e in self._entropy.items() if s > episode[0]}

    def _asks_for_help(self, stamp: int) -> bool:
        """Whether the policy's flag rises with its entropy for the observation stamped ``stamp`` (none: no)."""
        if self.flag is None or stamp not in self._entropy:
            return False
        was = self.flag.raised
        return self.flag.update(self._entropy[stamp]) and not was

    def _answer(self, stamp: int, state: dict[str, np.ndarray], gripper: float | None) -> list[JoyInput]:
        seed = self._episode[1]
        if self.driving and self.expert.phase == self.handback_phase:
            self.driving = False
            self.log.append(Takeover('handback', seed, self.steps, stamp, self.reason))
            self.watch.rebase(state)
            self.flag = self.p.flag()
        elif not self.driving:
            asks = self._asks_for_help(stamp)
            why = self.watch.update(state, gripper) or ('uncertain' if asks else None)
            if why and self._countdown < 0 and self.takeovers < self.p.max_takeovers:
                self.reason, self._countdown = why, self.p.reaction_steps
            if self._countdown == 0:
                self._take_over(seed, stamp, gripper)
            elif self._countdown > 0:
                self._countdown -= 1
        if self.driving:
            obs = Observation(images={}, joint_names=[], joint_positions=np.zeros(0), eef_pos=state['eef_pos'],
                              object_state=state, step=self.steps)
            messages = self.encoder.encode(self.expert.act(obs), stamp).messages
            self.counts['human_steps'] += 1
        else:
            messages = [self.encoder.release(stamp)]
        self.answered_ns, self.last, self._prev_ns = stamp, messages[-1], stamp
        self.steps += 1
        self.counts['answered'] += 1
        return messages

    def _take_over(self, seed: int, stamp: int, gripper: float | None) -> None:
        self.driving, self._countdown = True, -1
        self.takeovers += 1
        self.counts[f'takeover_{self.reason}'] += 1
        self.expert.reset(seed * 100 + self.takeovers)  # its noise: reproducible per episode and takeover
        self.encoder.engage(self.p.initial_gripper if gripper is None else gripper)
        self.log.append(Takeover('takeover', seed, self.steps, stamp, self.reason))
