# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""robosuite task wrapper: ``reset(seed) -> Observation``, ``step(action7) -> (Observation, success)``; no ROS.

Why not robosuite's own camera observations (DESIGN.md 'Simulation'): we render the requested cameras
with one ``mujoco.Renderer`` per image size, shadows and reflections off (about 2x faster), and keep
``hard_reset=False`` (a reset takes ~0.03 s instead of ~1.8 s). Determinism: the env is created with a
fixed ``seed`` (robosuite samples object sizes at creation), and every ``reset(seed)`` gives the env's
rng and every placement sampler's rng a fresh ``numpy.random.default_rng(seed)``. A scenario's variation
(``variation=``, see ``hapo_sim.variation``) goes into the model before it is compiled; without one (or with a
plain one) the task is robosuite's own class, exactly as before.

Usage::

    env = SimEnv('lift', cameras=('agentview', 'robot0_eye_in_hand'), image_size=64)
    obs = env.reset(seed=3)
    obs, success = env.step([0, 0, 1, 0, 0, 0, -1])  # +z, gripper open
    env = SimEnv.for_scenario(load_scenario('config/scenarios/lift_far.yaml'))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hapo_interfaces.topics import ACTION_DIM

if TYPE_CHECKING:
    from hapo_sim.scenario import Scenario, Variation

os.environ.setdefault('MUJOCO_GL', 'egl')

TASKS: dict[str, str] = {
    'lift': 'Lift',
    'pick_place_can': 'PickPlaceCan',
    'stack': 'Stack',
    'nut_assembly_square': 'NutAssemblySquare',
}
"""Our task names -> robosuite environment names (robosuite names are accepted too)."""

DEFAULT_INSTRUCTIONS: dict[str, str] = {
    'lift': 'lift the cube',
    'pick_place_can': 'pick up the can and place it in its bin',
    'stack': 'stack the red cube on the green cube',
    'nut_assembly_square': 'put the square nut on the square peg',
}

_COMPONENTS = {'pos': ('x', 'y', 'z'), 'quat': ('qx', 'qy', 'qz', 'qw')}  # robosuite quaternions are xyzw


class SimError(ValueError):
    """Bad task, camera or action for the simulator; the text names the value and the legal ones."""


def task_key(task: str) -> str:
    """Our task name for ``task`` given as ours ('pick_place_can') or robosuite's ('PickPlaceCan')."""
    if task in TASKS:
        return task
    for key, name in TASKS.items():
        if task == name:
            return key
    raise SimError(f'unknown task {task!r}: use one of {sorted(TASKS)} or {sorted(TASKS.values())}')


def field_names(name: str, size: int) -> list[str]:
    """Flattened names of one state field: ``cube_pos`` -> cube_pos.x, .y, .z; others by index."""
    suffix = name.rsplit('_', 1)[-1]
    comps = _COMPONENTS.get(suffix)
    if comps is None or len(comps) != size:
        comps = tuple(str(i) for i in range(size))
    return [f'{name}.{c}' for c in comps]


def flatten_state(state: dict[str, np.ndarray]) -> tuple[list[str], list[float]]:
    """(names, values) of a state dict in key order, e.g. for a JointState on ``robot/object_state``."""
    names: list[str] = []
    values: list[float] = []
    for key, arr in state.items():
        flat = np.asarray(arr, dtype=np.float64).ravel()
        names += field_names(key, flat.size)
        values += [float(v) for v in flat]
    return names, values


def unflatten_state(names: Sequence[str], values: Sequence[float]) -> dict[str, np.ndarray]:
    """The inverse of ``flatten_state`` (e.g. a ``robot/object_state`` message): ``cube_pos.x, .y, .z`` ->
    ``{'cube_pos': array of 3}``, fields in first-seen order; SimError on a name without a component."""
    if len(names) != len(values):
        raise SimError(f'state has {len(names)} names but {len(values)} values')
    fields: dict[str, list[float]] = {}
    for name, value in zip(names, values, strict=True):
        key, dot, _ = name.rpartition('.')
        if not dot:
            raise SimError(f'state name {name!r} is not <field>.<component>')
        fields.setdefault(key, []).append(float(value))
    return {key: np.asarray(vals, dtype=np.float64) for key, vals in fields.items()}


@dataclass
class Observation:
    """One observation of the simulated robot."""

    images: dict[str, np.ndarray]  # camera name -> (H, W, 3) uint8, row 0 at the top of the picture
    joint_names: list[str]  # 7 arm joints + gripper finger joints (9 for Panda)
    joint_positions: np.ndarray  # (J,) rad for the arm, m for the fingers
    eef_pos: np.ndarray  # (3,) m, world frame
    object_state: dict[str, np.ndarray] = field(default_factory=dict)  # privileged, e.g. cube_pos, eef_quat
    step: int = 0  # steps since reset


class SimEnv:
    """A robosuite task with the OSC_POSE controller and our own camera renderer."""

    def __init__(self, task: str = 'lift', cameras: tuple[str, ...] | list[str] = ('agentview',),
                 image_size: int = 128, seed: int = 0, control_freq: int = 20, horizon: int = 200,
                 robot: str = 'Panda', variation: Variation | None = None):
        import mujoco
        from robosuite.controllers import load_composite_controller_config
        from robosuite.environments.base import REGISTERED_ENVS

        self.task = task_key(task)
        self.cameras = tuple(cameras)
        self.image_size = int(image_size)
        self.horizon = int(horizon)
        if self.image_size < 8:
            raise SimError(f'image_size={image_size} too small (>= 8)')
        # The robot's default composite config: BASIC with an OSC_POSE arm for Panda (body_parts['right']).
        config = load_composite_controller_config(robot=robot)
        arm = config['body_parts'].get('right', {})
        if config.get('type') != 'BASIC' or arm.get('type') != 'OSC_POSE':
            raise SimError(f'robot {robot!r} has no OSC_POSE arm controller in its BASIC config')
        env_class = REGISTERED_ENVS[TASKS[self.task]]
        extra = {}
        self.variation = variation if variation is not None and not variation.plain else None
        if self.variation is not None:
            from hapo_sim.scenario import LAYOUTS
            from hapo_sim.variation import varied_class

            if self.task not in LAYOUTS:
                raise SimError(f'task {self.task!r} has no scene variations (tasks with them: {sorted(LAYOUTS)})')
            env_class, extra = varied_class(env_class), {'variation': self.variation, 'task': self.task}
        self._env = env_class(
            robots=robot, controller_configs=config, has_renderer=False,
            has_offscreen_renderer=False, use_camera_obs=False, use_object_obs=True, reward_shaping=False,
            control_freq=control_freq, horizon=max(self.horizon, 1), ignore_done=True, hard_reset=False,
            seed=seed, **extra)
        model = self._env.sim.model
        known = [model.camera_id2name(i) for i in range(model.ncam)]
        missing = [c for c in self.cameras if c not in known]
        if missing:
            raise SimError(f'unknown camera(s) {missing}: {self._env.__class__.__name__} has {known}')
        self._renderer = None
        if self.cameras:
            # No multisampling: with software GL (no GPU) the 4x MSAA resolve costs about half the frame.
            model._model.vis.quality.offsamples = 0
            self._renderer = mujoco.Renderer(model._model, self.image_size, self.image_size)
            # Shadows and reflections off: about half the render time, the policy does not need them.
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._robot = self._env.robots[0]
        self._arm = self._robot.arms[0]
        joints = list(self._robot.robot_joints) + list(self._robot.gripper_joints[self._arm])
        self.joint_names = joints
        self._qpos_idx = [model.get_joint_qpos_addr(j) for j in joints]
        self._object_keys = [name for name, o in self._env._observables.items() if o.modality == 'object']
        self._distractor = None  # body id of a scenario's distractor
        if self.variation is not None and self.variation.distractor:
            from hapo_sim.variation import DISTRACTOR_NAME

            self._distractor = model.body_name2id(f'{DISTRACTOR_NAME}_main')
        self._steps = 0
        self._raw: dict = {}

    @classmethod
    def for_scenario(cls, scenario: Scenario, **kwargs) -> SimEnv:
        """A SimEnv of ``scenario``'s task and variation, with the cameras, image size and horizon it names
        (the others, and ``seed``, ``control_freq``, ``robot``, from ``kwargs`` or the defaults)."""
        named = {'cameras': scenario.cameras, 'image_size': scenario.image_size, 'horizon': scenario.horizon}
        return cls(scenario.task, **{**{k: v for k, v in named.items() if v is not None}, **kwargs},
                   variation=scenario.variation)

    @property
    def steps(self) -> int:
        """Steps since the last reset."""
        return self._steps

    def reset(self, seed: int) -> Observation:
        """Start an episode; the same seed gives the same initial state and images."""
        self._env.rng = np.random.default_rng(seed)
        self._reseed_samplers(getattr(self._env, 'placement_initializer', None), seed)
        self._raw = self._env.reset()
        self._steps = 0
        return self.observe()

    def _reseed_samplers(self, sampler, seed: int) -> None:
        # A SequentialCompositeSampler (PickPlace, NutAssembly) holds one sampler per object, each with its rng.
        if sampler is None:
            return
        sampler.rng = np.random.default_rng(seed)
        for i, sub in enumerate(getattr(sampler, 'samplers', {}).values()):
            self._reseed_samplers(sub, seed * 1000 + i + 1)

    def step(self, action) -> tuple[Observation, bool]:
        """Execute one 7-D controller input ``[x, y, z, roll, pitch, yaw, gripper]``, clipped to [-1, 1].

        Gripper: -1 opens, +1 closes (robosuite moves the fingers by a fixed increment toward the sign,
        so 0 holds them). Raises SimError on a wrong size or a non-finite value.
        """
        a = np.asarray(action, dtype=np.float64).ravel()
        if a.size != ACTION_DIM:
            raise SimError(f'action has {a.size} values, expected {ACTION_DIM}')
        if not np.all(np.isfinite(a)):
            raise SimError(f'action has non-finite values {a.tolist()}')
        self._raw, _, _, _ = self._env.step(np.clip(a, -1.0, 1.0))
        self._steps += 1
        return self.observe(), self.success()

    def success(self) -> bool:
        """robosuite's task success check on the current state."""
        return bool(self._env._check_success())

    def render(self, camera: str) -> np.ndarray:
        """(H, W, 3) uint8 view of ``camera``, sky up, table down."""
        self._renderer.update_scene(self._env.sim.data._data, camera=camera)
        return self._renderer.render().copy()  # mujoco.Renderer already returns rows top-down

    def observe(self) -> Observation:
        """The current state as an Observation (renders the cameras)."""
        qpos = self._env.sim.data.qpos
        raw = self._raw
        state = {k: np.asarray(raw[k], dtype=np.float64).copy() for k in self._object_keys if k in raw}
        prefix = self._robot.robot_model.naming_prefix
        eef_pos = np.asarray(raw[f'{prefix}eef_pos'], dtype=np.float64).copy()
        state['eef_pos'] = eef_pos
        state['eef_quat'] = np.asarray(raw[f'{prefix}eef_quat'], dtype=np.float64).copy()
        if self._distractor is not None:
            state['distractor_pos'] = np.array(self._env.sim.data.body_xpos[self._distractor], dtype=np.float64)
        return Observation(
            images={c: self.render(c) for c in self.cameras},
            joint_names=list(self.joint_names),
            joint_positions=np.array([qpos[i] for i in self._qpos_idx], dtype=np.float64),
            eef_pos=eef_pos, object_state=state, step=self._steps)

    def close(self) -> None:
        """Free the renderer and the simulation."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self._env.close()

