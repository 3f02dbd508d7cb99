# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""A scripted expert at a joystick: episode events and privileged states in, Joy messages out (no ROS).

The expert drives the robot through the mux as a person does (``expert_node`` wires this to topics)::

    hapo/episode START (seed) --> expert.reset(seed)
    robot/object_state (stamp t) --> expert.act --> JoyEncoder --> Joy stamped t, deadman held --> mux
        --> hapo/cmd (source human, stamp t) --> sim steps once (lockstep) --> next observation

Each observation is answered once (a re-sent one gets the same message again, the expert is not stepped
twice); the Joy carries the observation's stamp, so the mux pairs the command with exactly that observation
(``hapo_teleop.mux``). The topics arrive in no fixed order, so an observation is answered only once the
START it follows is known, and never after the end event of its episode.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from hapo_interfaces.enums import EpisodeEvent
from hapo_interfaces.params import ParamError, param
from hapo_interfaces.records import EpisodeMessage
from hapo_sim.env import TASKS, Observation, SimEnv, unflatten_state
from hapo_sim.episode_index import EpisodeIndex
from hapo_sim.experts import expert_for
from hapo_teleop.joy_mapping import Encoded, JoyEncoder, JoyInput, JoyMapping

_JOY = JoyMapping()
LOST_ATOL = 1e-6  # an executed action farther than this from the expert's (any dim) counts as lost
NOTHING = Encoded([], ())


@dataclass(frozen=True)
class ExpertParams:
    """Parameters of ``expert_node``. The joystick ones have the mux's names and defaults, so one ``key:=value``
    sets both (a mapping the mux does not share would drive the robot wrongly)."""

    task: str = param('lift', 'task whose scripted expert drives', choices=(*TASKS, *TASKS.values()), read_only=True)
    noise_std: float = param(0.05, 'std of the Gaussian noise on the 6 arm dims of each action (seeded per episode)',
                             lo=0.0, hi=1.0, read_only=True)
    keepalive_hz: float = param(20.0, 'republish the last Joy at this rate (a joystick driver\'s autorepeat), so the '
                                      'deadman stays fresh on the mux', unit='Hz', lo=1.0, hi=1000.0, read_only=True)
    joy_axes: int = param(8, 'axes per Joy message (at least what axis_map needs)', lo=1, hi=64, read_only=True)
    joy_buttons: int = param(11, 'buttons per Joy message (at least what the mux mapping needs)', lo=1, hi=64,
                             read_only=True)
    initial_gripper: float = param(-1.0, "the mux's gripper before any command (its parameter of that name)",
                                   lo=-1.0, hi=1.0, read_only=True)
    axis_map: list = param(list(_JOY.axis_map), 'Joy axis index for x y z roll pitch yaw (-1: unmapped, that dim '
                                                'of the expert is lost)', read_only=True)
    axis_scale: list = param(list(_JOY.axis_scale), 'scale per motion dim (sign flips), as the mux', read_only=True)
    deadzone: float = param(_JOY.deadzone, "the mux's axis deadzone (undone by the encoding)", lo=0.0, hi=0.99,
                            read_only=True)
    deadman_button: int = param(_JOY.deadman_button, 'held on every message', lo=0, hi=63, read_only=True)
    gripper_button: int = param(_JOY.gripper_button, 'pressed to toggle the gripper', lo=-1, hi=63, read_only=True)

    def mapping(self) -> JoyMapping:
        """The joystick layout; ParamError (one line) if it is inconsistent."""
        names = {f.name for f in fields(JoyMapping)}
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name in names}
        try:
            mapping = JoyMapping(**{**values, 'axis_map': tuple(int(i) for i in self.axis_map),
                                    'axis_scale': tuple(float(s) for s in self.axis_scale)})
        except ValueError as exc:
            raise ParamError(f'joystick mapping: {exc}') from None
        if mapping.axes_needed > self.joy_axes:
            raise ParamError(f'parameter joy_axes={self.joy_axes}: axis_map needs {mapping.axes_needed}')
        return mapping


class JoyExpert:
    """The expert of ``p.task`` answering observations with Joy messages; see the module docstring."""

    def __init__(self, p: ExpertParams):
        self.p = p
        self.expert = expert_for(p.task, p.noise_std)
        self.encoder = JoyEncoder(p.mapping(), p.initial_gripper, size=(p.joy_axes, p.joy_buttons))
        self.last: JoyInput = self.encoder.idle(1)  # 1 ns: takes control, answers no observation
        self.episodes = EpisodeIndex()
        self._episode: int | None = None  # START stamp the expert was reset for
        self.answered_ns = -1  # stamp of the last observation answered
        self._pending: tuple[int, dict] | None = None  # an observation waiting for its START
        self.steps = 0  # observations answered in this episode
        self.counts = {'answered': 0, 'repeated': 0, 'stale': 0, 'waited': 0, 'lost': 0, 'late_start': 0}
        self.lost_dims: set[int] = set()

    def event(self, msg: EpisodeMessage) -> Encoded:
        """Take an episode event; what to publish (the answer to an observation that waited for this START)."""
        if msg.event is EpisodeEvent.START and msg.stamp_ns < self.answered_ns:
            self.counts['late_start'] += 1  # an observation of this episode was answered as the previous one's
        self.episodes.add(msg)
        if self._pending is not None and msg.event is EpisodeEvent.START:
            stamp, state = self._pending
            self._pending = None
            return self.observe(stamp, state)
        return NOTHING

    def observe(self, stamp_ns: int, state: dict[str, np.ndarray]) -> Encoded:
        """Take the privileged state of the observation stamped ``stamp_ns``; what to publish, and the action the
        mux will execute for it (empty when this call answers nothing new)."""
        if stamp_ns <= self.answered_ns:
            self.counts['repeated' if stamp_ns == self.answered_ns else 'stale'] += 1
            return Encoded([self.last], ()) if stamp_ns == self.answered_ns else NOTHING
        episode = self.episodes.episode_of(stamp_ns)
        if episode is None:
            self.counts['waited'] += 1
            self._pending = (stamp_ns, state)
            return NOTHING
        start, seed = episode
        if start != self._episode:
            self.expert.reset(seed)
            self._episode, self.steps = start, 0
        obs = Observation(images={}, joint_names=[], joint_positions=np.zeros(0), eef_pos=state['eef_pos'],
                          object_state=state, step=self.steps)
        action = self.expert.act(obs)
        out = self.encoder.encode(action, stamp_ns)
        lost = np.flatnonzero(np.abs(np.asarray(out.executed) - action) > LOST_ATOL)
        if lost.size:
            self.counts['lost'] += 1
            self.lost_dims.update(int(d) for d in lost)
        self.answered_ns, self.last = stamp_ns, out.messages[-1]
        self.steps += 1
        self.counts['answered'] += 1
        return out

    def observe_message(self, stamp_ns: int, names, values) -> Encoded:
        """``observe`` for the fields of a ``robot/object_state`` JointState."""
        return self.observe(stamp_ns, unflatten_state(list(names), list(values)))


def run_episode(env: SimEnv, expert: JoyExpert, seed: int, horizon: int) -> tuple[bool, list[tuple[float, ...]]]:
    """One demo in this process, as the graph runs it (the in-process floor of ``hapo collect-demos``): the
    expert answers each observation, the env executes what the mux would. Returns (success, executed actions)."""
    start = expert.answered_ns + 1  # stamps only need to increase, as the sim's do
    expert.event(EpisodeMessage(EpisodeEvent.START, start, 'floor', {'seed': seed}))
    obs, actions, success = env.reset(seed), [], False
    for stamp in range(start + 1, start + 1 + horizon):
        action = expert.observe(stamp, obs.object_state).executed
        actions.append(action)
        obs, success = env.step(action)
        if success:
            break
    return success, actions
