# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Scripted experts from privileged state (demos for the base policy); no ROS.

An expert reads ``Observation.object_state`` (object and end-effector poses) and returns the 7-D
controller input ``[x, y, z, roll, pitch, yaw, gripper]`` in [-1, 1]. Gaussian noise (seeded) is added
to the executed action so demos cover small deviations, as the demos a human records would.

    env = SimEnv('lift'); expert = expert_for('lift', seed=0)
    obs = env.reset(seed=0); expert.reset(seed=0)
    while not done: obs, done = env.step(expert.act(obs))
"""

from __future__ import annotations

import numpy as np

from hapo_sim.env import Observation, SimError, task_key

OSC_MAX_STEP_M = 0.05  # OSC_POSE output_max for position: controller input 1.0 = 5 cm target offset


class LiftExpert:
    """Hover above the cube, descend, close the gripper, lift.

    Phases advance on thresholds of the eef-to-target distance; closing lasts a fixed number of steps
    because the gripper moves by a fixed increment per step (robosuite PandaGripper speed 0.2).
    """

    HOVER_M = 0.08  # height above the cube centre for the approach
    GRASP_DZ_M = -0.005  # grasp slightly below the cube centre
    LIFT_M = 0.25  # lift target above the grasp height
    CLOSE_STEPS = 8
    GAIN = 1.2  # fraction of the remaining offset commanded per step (in units of OSC_MAX_STEP_M)

    def __init__(self, noise_std: float = 0.05, seed: int = 0):
        self.noise_std = float(noise_std)
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Start a new episode: phase 'hover', noise stream from ``seed``."""
        self.phase = 'hover'
        self._closing = 0
        self._lift_z: float | None = None
        self._rng = np.random.default_rng(seed)

    def _toward(self, eef: np.ndarray, target: np.ndarray) -> np.ndarray:
        return np.clip(self.GAIN * (target - eef) / OSC_MAX_STEP_M, -1.0, 1.0)

    def clean_action(self, obs: Observation) -> np.ndarray:
        """The noiseless action for ``obs``; advances the phase."""
        cube = obs.object_state['cube_pos']
        eef = obs.object_state['eef_pos']
        action = np.zeros(7)
        if self.phase == 'hover':
            target = cube + [0.0, 0.0, self.HOVER_M]
            action[:3] = self._toward(eef, target)
            action[6] = -1.0
            if np.linalg.norm((target - eef)[:2]) < 0.01 and abs(target[2] - eef[2]) < 0.02:
                self.phase = 'descend'
        if self.phase == 'descend':
            target = cube + [0.0, 0.0, self.GRASP_DZ_M]
            action[:3] = self._toward(eef, target)
            action[6] = -1.0
            if np.linalg.norm(target - eef) < 0.01:
                self.phase = 'close'
        if self.phase == 'close':
            action[:3] = 0.0
            action[6] = 1.0
            self._closing += 1
            if self._closing >= self.CLOSE_STEPS:
                self.phase = 'lift'
                self._lift_z = float(eef[2]) + self.LIFT_M
        elif self.phase == 'lift':
            target = np.array([eef[0], eef[1], self._lift_z])
            action[:3] = self._toward(eef, target)
            action[6] = 1.0
        return action

    def act(self, obs: Observation) -> np.ndarray:
        """The action to execute: the clean action plus N(0, noise_std) on the arm dims, clipped."""
        action = self.clean_action(obs)
        action[:6] += self._rng.normal(0.0, self.noise_std, 6)
        return np.clip(action, -1.0, 1.0)


_EXPERTS = {'lift': LiftExpert}


def expert_for(task: str, noise_std: float = 0.05, seed: int = 0) -> LiftExpert:
    """The scripted expert of ``task``; raises SimError for tasks without one."""
    key = task_key(task)
    if key not in _EXPERTS:
        raise SimError(f'no scripted expert for task {key!r}; available: {sorted(_EXPERTS)}')
    return _EXPERTS[key](noise_std=noise_std, seed=seed)
