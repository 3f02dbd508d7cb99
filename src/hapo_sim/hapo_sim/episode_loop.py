# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The sim node's episode loop over a SimEnv: which command steps the sim, when episodes start and end, and what
goes out, in order; no ROS (``sim_node`` publishes the outputs, stepping rules: ``stepping.py``).

Every call takes the time of the call (``now_ns``) and returns the outputs to publish in order: ``Published`` (one
observation: images, joint and object states under one stamp, taken by ``now()`` once it is rendered),
``EpisodeMessage`` (origin 'sim') and log lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hapo_interfaces.enums import EpisodeEvent
from hapo_interfaces.records import EpisodeMessage, ExecutedStep
from hapo_sim.env import Observation, SimEnv
from hapo_sim.sim_params import SimParams
from hapo_sim.stepping import Episodes, LatestCommand, Lockstep, StampClock, Verdict

ORIGIN = 'sim'


@dataclass(frozen=True)
class Published:
    """One observation to publish; every message of it carries ``stamp_ns``."""

    stamp_ns: int
    obs: Observation


Output = Published | EpisodeMessage | str


class EpisodeLoop:
    """Episodes of ``env`` under the node's parameters (lockstep or real time, seeds, horizon, limits)."""

    def __init__(self, env: SimEnv, p: SimParams, instruction: str, now: Callable[[], int]):
        self.env, self.p, self.instruction, self.now = env, p, instruction, now
        self.lockstep, self.latest, self.clock = Lockstep(), LatestCommand(int(1e9 / p.control_rate_hz)), StampClock()
        self.episodes = Episodes(p.seed, p.horizon, p.max_episodes, p.auto_reset)

    @property
    def started(self) -> str:
        """The log line of the current (or last) episode's start."""
        return f'episode {self.episodes.index} seed {self.p.seed + self.episodes.index}'

    def _event(self, now_ns: int, event: EpisodeEvent, **extra) -> EpisodeMessage:
        return EpisodeMessage(event, self.clock.next(now_ns), ORIGIN, extra)

    def _observed(self, obs: Observation) -> Published:
        # Stamped when it exists: after the step and the render (``now()``), not when the command came.
        out = Published(self.clock.next(self.now()), obs)
        self.lockstep.observed(out.stamp_ns)  # the node publishes it before it takes the next command
        return out

    def start(self, now_ns: int) -> list[Output]:
        """Begin the next episode: its START event, then its first observation."""
        seed = self.episodes.start()
        obs = self.env.reset(seed)
        demo = {'demo': True} if self.p.demo else {}
        return [self._event(now_ns, EpisodeEvent.START, task=self.env.task, instruction=self.instruction, seed=seed,
                            episode=self.episodes.index, control_rate_hz=self.p.control_rate_hz, **demo),
                self._observed(obs)]

    def _end(self, now_ns: int) -> list[Output]:
        self.lockstep.idle()
        if self.episodes.finish():
            return self.start(now_ns)
        return [] if self.episodes.can_start() else [f'max_episodes={self.p.max_episodes} done; idle']

    def _advance(self, now_ns: int, action) -> list[Output]:
        obs, success = self.env.step(action)
        outcome = self.episodes.outcome(self.env.steps, success)
        out: list[Output] = [self._observed(obs)]
        if outcome is EpisodeEvent.SUCCESS:
            out.append(self._event(now_ns, outcome, steps=self.env.steps))
        elif outcome is EpisodeEvent.FAILURE:
            out.append(self._event(now_ns, outcome, reason='horizon', steps=self.env.steps))
        return out + self._end(now_ns) if outcome is not None else out

    def command(self, now_ns: int, step: ExecutedStep) -> list[Output]:
        """A ``hapo/cmd`` message: steps once in lockstep when it answers the current observation; in real
        time it is only stored for the next tick."""
        if self.p.mode == 'realtime':
            self.latest.store(step, now_ns)
        elif self.episodes.running and self.lockstep.offer(step) is Verdict.STEP:
            return self._advance(now_ns, step.action)
        return []

    def tick(self, now_ns: int) -> list[Output]:
        """Real time: step with the latest fresh command, else hold."""
        return self._advance(now_ns, self.latest.choose(now_ns)) if self.episodes.running else []

    def ended_by(self, now_ns: int, event: EpisodeMessage) -> list[Output]:
        """Another node's terminal event (an operator's outcome) ends the running episode."""
        if event.origin == ORIGIN or not event.event.terminal or not self.episodes.running:
            return []
        return [f'episode {self.episodes.index} ended by {event.origin}: {event.event.name}', *self._end(now_ns)]

    def reset(self, now_ns: int) -> tuple[bool, str, list[Output]]:
        """The reset service: abort the running episode, start the next; (success, message, outputs)."""
        out: list[Output] = []
        if self.episodes.running:
            out.append(self._event(now_ns, EpisodeEvent.ABORT, reason='reset', steps=self.env.steps))
            self.episodes.finish()
            self.lockstep.idle()
        if not self.episodes.can_start():
            return False, f'max_episodes={self.p.max_episodes} reached', out
        out += self.start(now_ns)
        return True, self.started, out
