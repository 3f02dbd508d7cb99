# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Scripted experts from privileged state (demos for the base policy); no ROS.

An expert reads ``Observation.object_state`` (object and end-effector poses) and returns the 7-D
controller input ``[x, y, z, roll, pitch, yaw, gripper]`` in [-1, 1]. Gaussian noise (seeded) is added
to the executed action so demos cover small deviations, as the demos a human records would.

    env = SimEnv('lift'); expert = expert_for('lift', seed=0)
    obs = env.reset(seed=0); expert.reset(seed=0)
    while not done: obs, done = env.step(expert.act(obs))

Each expert is a table of phases (``Phase``) and a ``target`` method giving the end-effector position
each phase moves to; ``PhaseExpert`` runs the table. Success rates: README ('Scripted experts'),
measured with ``python -m hapo_sim.expert_check``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation  # a robosuite dependency

from hapo_sim.env import Observation, SimError, task_key

OSC_MAX_STEP_M = 0.05  # OSC_POSE output_max for position: controller input 1.0 = 5 cm target offset
OSC_MAX_STEP_RAD = 0.5  # OSC_POSE output_max for rotation (axis-angle in the robot base frame)
OPEN, CLOSE = -1.0, 1.0  # gripper input: robosuite moves the fingers by a fixed increment toward the sign


@dataclass(frozen=True)
class Phase:
    """One phase: its gripper input and when it ends.

    A phase with ``steps`` ends after that many steps (opening and closing: the fingers move at a fixed
    speed, robosuite PandaGripper 0.2 per step); one with tolerances ends when the end effector is within
    ``xy_m`` horizontally and ``z_m`` vertically of its target; one with neither is the last and never ends.
    """

    name: str
    gripper: float
    xy_m: float = 0.0
    z_m: float = 0.0
    steps: int = 0


class PhaseExpert:
    """Runs a subclass's ``PHASES`` in order, moving the end effector toward ``target(phase, obs)``.

    Phases that end on reaching their target hand over within the same step, so no step is spent idle.
    The gripper is held pointing straight down: without that, the rotation noise walks it off vertical
    over an episode, and a tilted finger meets the floor before the grasp height.
    """

    PHASES: tuple[Phase, ...] = ()
    HORIZON = 0  # steps an episode may take: about twice the longest successful one measured
    GAIN = 1.2  # fraction of the remaining offset commanded per step (in units of OSC_MAX_STEP_M)
    DOWN = Rotation.from_quat([1.0, 0.0, 0.0, 0.0])  # eef orientation held (xyzw): gripper axis along -z
    ROT_GAIN = 0.5  # fraction of the orientation error commanded per step (in units of OSC_MAX_STEP_RAD)

    def __init__(self, noise_std: float = 0.05, seed: int = 0):
        self.noise_std = float(noise_std)
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Start a new episode at the first phase, noise stream from ``seed``."""
        self._index = 0
        self._phase_steps = 0
        self._phase_start: np.ndarray | None = None  # eef position when the current phase began
        self._rng = np.random.default_rng(seed)

    @property
    def phase(self) -> str:
        """Name of the current phase."""
        return self.PHASES[self._index].name

    def target(self, phase: str, obs: Observation) -> np.ndarray | None:
        """The end-effector position ``phase`` moves to now; None holds still."""
        raise NotImplementedError

    def _ended(self, phase: Phase, eef: np.ndarray, target: np.ndarray | None) -> bool:
        if phase.steps:
            return self._phase_steps >= phase.steps
        if phase.xy_m and target is not None:
            error = target - eef
            return bool(np.linalg.norm(error[:2]) < phase.xy_m and abs(error[2]) < phase.z_m)
        return False

    def clean_action(self, obs: Observation) -> np.ndarray:
        """The noiseless action for ``obs``; advances the phase."""
        eef = obs.object_state['eef_pos']
        if self._phase_start is None:
            self._phase_start = eef.copy()
        while True:
            phase = self.PHASES[self._index]
            target = self.target(phase.name, obs)
            if self._index == len(self.PHASES) - 1 or not self._ended(phase, eef, target):
                break
            self._index += 1
            self._phase_steps = 0
            self._phase_start = eef.copy()
        self._phase_steps += 1
        action = np.zeros(7)
        if target is not None:
            action[:3] = np.clip(self.GAIN * (target - eef) / OSC_MAX_STEP_M, -1.0, 1.0)
        error = (self.DOWN * Rotation.from_quat(obs.object_state['eef_quat']).inv()).as_rotvec()
        action[3:6] = np.clip(self.ROT_GAIN * error / OSC_MAX_STEP_RAD, -1.0, 1.0)
        action[6] = phase.gripper
        return action

    def act(self, obs: Observation) -> np.ndarray:
        """The action to execute: the clean action plus N(0, noise_std) on the arm dims, clipped."""
        action = self.clean_action(obs)
        action[:6] += self._rng.normal(0.0, self.noise_std, 6)
        return np.clip(action, -1.0, 1.0)


class LiftExpert(PhaseExpert):
    """Hover above the cube, descend, close the gripper, lift."""

    HOVER_M = 0.08  # height above the cube centre for the approach
    GRASP_DZ_M = -0.005  # grasp slightly below the cube centre
    LIFT_M = 0.25  # lift target above the grasp height
    HORIZON = 100
    PHASES = (
        Phase('hover', OPEN, xy_m=0.01, z_m=0.02),
        Phase('descend', OPEN, xy_m=0.01, z_m=0.01),
        Phase('close', CLOSE, steps=8),
        Phase('lift', CLOSE),
    )

    def target(self, phase: str, obs: Observation) -> np.ndarray | None:
        cube = obs.object_state['cube_pos']
        if phase == 'hover':
            return cube + [0.0, 0.0, self.HOVER_M]
        if phase in ('descend', 'close'):
            return cube + [0.0, 0.0, self.GRASP_DZ_M]
        if phase == 'lift':
            return self._phase_start + [0.0, 0.0, self.LIFT_M]
        return None


class PickPlaceCanExpert(PhaseExpert):
    """Grasp the can, carry it over its compartment of the goal bin, lower it, release, retreat upward.

    While the can is held, targets are where the can should go, shifted by the current eef-to-can
    offset, so a grasp off the can's centre still lands the can itself in the bin.
    """

    # robosuite 1.5.2 PickPlace defaults: goal bin bin2_pos = (0.1, 0.28, 0.8), bin_size = table_full_size
    # = (0.39, 0.49, 0.82). The Can (object id 3) counts as placed while its centre lies in the quarter
    # x in (0.1, 0.295), y in (0.28, 0.525), z in (0.8, 0.9), with the eef over 4.2 cm away from it
    # (PickPlace.not_in_bin and _check_success). Its target_bin_placements entry is the quarter's centre:
    GOAL_XY = np.array([0.1975, 0.4025])
    HOVER_M = 0.10  # height above the can centre for the approach (the can is 10 cm tall)
    GRASP_DZ_M = 0.0  # grasp at the can centre
    CARRY_Z = 1.02  # can centre while carried: its bottom (centre - 6 cm) clears the 0.9 m bin walls
    PLACE_Z = 0.88  # can centre at release: 2 cm above where it rests on the bin floor (0.86)
    RETREAT_M = 0.10  # straight up after release, out of the 4.2 cm success radius
    HORIZON = 300
    PHASES = (
        Phase('hover', OPEN, xy_m=0.01, z_m=0.02),
        Phase('descend', OPEN, xy_m=0.01, z_m=0.01),
        Phase('close', CLOSE, steps=10),
        Phase('lift', CLOSE, xy_m=0.03, z_m=0.03),
        Phase('carry', CLOSE, xy_m=0.02, z_m=0.03),
        Phase('lower', CLOSE, xy_m=0.05, z_m=0.015),
        Phase('release', OPEN, steps=10),
        Phase('retreat', OPEN),
    )

    def target(self, phase: str, obs: Observation) -> np.ndarray | None:
        can = obs.object_state['Can_pos']
        eef = obs.object_state['eef_pos']
        if phase == 'hover':
            return can + [0.0, 0.0, self.HOVER_M]
        if phase in ('descend', 'close'):
            return can + [0.0, 0.0, self.GRASP_DZ_M]
        if phase == 'lift':
            return np.array([*self._phase_start[:2], eef[2] + self.CARRY_Z - can[2]])  # straight up
        if phase == 'carry':
            return eef + np.append(self.GOAL_XY - can[:2], self.CARRY_Z - can[2])
        if phase == 'lower':
            return eef + np.append(self.GOAL_XY - can[:2], self.PLACE_Z - can[2])
        if phase == 'retreat':
            return self._phase_start + [0.0, 0.0, self.RETREAT_M]
        return None


EXPERTS: dict[str, type[PhaseExpert]] = {'lift': LiftExpert, 'pick_place_can': PickPlaceCanExpert}


def expert_for(task: str, noise_std: float = 0.05, seed: int = 0) -> PhaseExpert:
    """The scripted expert of ``task``; raises SimError for tasks without one."""
    key = task_key(task)
    if key not in EXPERTS:
        raise SimError(f'no scripted expert for task {key!r}; available: {sorted(EXPERTS)}')
    return EXPERTS[key](noise_std=noise_std, seed=seed)
