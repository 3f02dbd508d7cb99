# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Scenarios as files: a task, what the cameras render, and a variation of the scene; no ROS, no robosuite.

A scenario file (``config/scenarios/*.yaml``; every key but ``task`` optional)::

    task: lift                       # our name or robosuite's (Lift)
    horizon: 200                     # steps per episode (omitted: the deploy config's)
    cameras: [agentview, robot0_eye_in_hand]
    image_size: 64                   # px, square
    instruction: lift the cube       # omitted: the task default
    placement:                       # the task object's centre, m relative to the task's placement centre
      x: [0.08, 0.12]                #   (omitted axis: robosuite's range), yaw in rad (omitted: a full turn)
      y: [-0.12, -0.08]
      yaw: [0.0, 0.5]
    object: {rgba: [0.1, 0.3, 0.9, 1.0], size_scale: 1.2}   # the task object (Lift's cube, PickPlaceCan's can)
    table: {rgba: [0.6, 0.5, 0.4, 1.0]}                     # what it stands on (Lift's table top, the bins)
    distractor: true                 # a second, green box on the same surface that is not the task object

``load_scenario(path) -> Scenario``; anything wrong raises ``ScenarioError`` with one line naming the file
and the key. ``hapo_sim.variation`` applies a ``Variation`` to the robosuite model (``SimEnv(variation=...)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from hapo_sim.env import TASKS, SimError, task_key

Range = tuple[float, float]
RGBA = tuple[float, float, float, float]


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the text is one line: ``<file>: <key>: <reason>``."""


@dataclass(frozen=True)
class TaskLayout:
    """Where a task puts its object: robosuite 1.5.2's defaults (``tests/unit/test_scenario_env.py`` checks them)."""

    surface: str  # what the task object stands on, for messages
    centre: tuple[float, float]  # m, world x, y of the placement centre (robosuite's sampler reference_pos)
    half_size: tuple[float, float]  # m, usable half-size of the surface around the centre (x, y)
    object_key: str  # Observation.object_state key of the task object's position
    object_radius: float  # m, the largest horizontal radius of the task object at size_scale 1
    max_size_scale: float = 2.0
    max_scale_reason: str = ''


LAYOUTS: dict[str, TaskLayout] = {
    # Lift: the cube (half-size 0.020-0.022 m, radius = norm of the half-sizes in x, y) anywhere on the 0.8 m
    # table; success is the cube's centre 0.04 m above the table top, so a cube over 1.3x (half-size 0.029 m)
    # would start close to succeeding.
    'lift': TaskLayout('table', (0.0, 0.0), (0.4, 0.4), 'cube_pos', 0.0312, 1.3,
                       'a bigger cube rests too close to the lift height that counts as success'),
    # PickPlaceCan: robosuite samples the can in bin1 at 0.05 m from its walls (bin 0.39 x 0.49 m).
    'pick_place_can': TaskLayout('bin', (0.1, -0.25), (0.145, 0.195), 'Can_pos', 0.025),
}
"""Tasks whose scene a scenario can vary; other tasks take only task, horizon, cameras, image_size, instruction."""

SIZE_SCALE = (0.5, 2.0)
YAW_LIMIT = 2 * math.pi


@dataclass(frozen=True)
class Placement:
    """Ranges of the task object's initial pose; None keeps robosuite's."""

    x: Range | None = None  # m, relative to the task's placement centre
    y: Range | None = None
    yaw: Range | None = None  # rad about the vertical axis

    @property
    def default(self) -> bool:
        return self.x is None and self.y is None and self.yaw is None


@dataclass(frozen=True)
class Variation:
    """How a scene differs from the task's own; ``Variation()`` is the task as robosuite makes it."""

    placement: Placement = field(default_factory=Placement)
    object_rgba: RGBA | None = None
    object_size_scale: float = 1.0
    table_rgba: RGBA | None = None
    distractor: bool = False

    @property
    def plain(self) -> bool:
        return self == Variation()


@dataclass(frozen=True)
class Scenario:
    """A task, what to render and a variation; None/'' fields leave the value to the caller's defaults."""

    task: str  # our task key (lift, pick_place_can, ...)
    horizon: int | None = None
    cameras: tuple[str, ...] | None = None
    image_size: int | None = None
    instruction: str = ''
    variation: Variation = field(default_factory=Variation)
    source: str = ''  # the file it came from


KEYS = ('task', 'horizon', 'cameras', 'image_size', 'instruction', 'placement', 'object', 'table', 'distractor')
VARIATION_KEYS = ('placement', 'object', 'table', 'distractor')


def load_scenario(path: str | Path) -> Scenario:
    """The scenario in ``path``; ScenarioError (one line naming the file and the key) on anything wrong."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f'{path}: cannot read scenario: {" ".join(str(exc).split())}') from None
    return parse_scenario(doc, str(path))


def scenario_variation(path: str, task: str) -> Variation | None:
    """The variation of the scenario in ``path`` ('' = none) for a sim of ``task``; ScenarioError on a mismatch."""
    if not path:
        return None
    scenario = load_scenario(path)
    if scenario.task != task_key(task):
        raise ScenarioError(f'{path}: task: {scenario.task!r}, but the sim runs task {task_key(task)!r} '
                            f'(hapo deploy scenario:=FILE sets both)')
    return scenario.variation


def parse_scenario(doc: Any, source: str) -> Scenario:
    """A Scenario from a parsed YAML document; ``source`` names it in errors."""
    p = _Parser(source)
    if not isinstance(doc, Mapping):
        p.fail('', 'a scenario is a mapping with at least task:')
    p.unknown(doc, KEYS, '')
    if 'task' not in doc:
        p.fail('task', f'missing: one of {sorted(TASKS)}')
    if not isinstance(doc['task'], str):
        p.fail('task', f'{doc["task"]!r} is not a task name: one of {sorted(TASKS)}')
    try:
        task = task_key(doc['task'])
    except SimError as exc:
        p.fail('task', str(exc))
    layout = LAYOUTS.get(task)
    if layout is None:
        varied = [k for k in VARIATION_KEYS if k in doc]
        if varied:
            p.fail(varied[0], f'not supported for task {task!r} (variations exist for {sorted(LAYOUTS)})')
    cameras = doc.get('cameras')
    if cameras is not None:
        if not (isinstance(cameras, list) and cameras and all(isinstance(c, str) and c for c in cameras)):
            p.fail('cameras', f'{cameras!r} is not a non-empty list of camera names')
        if len(set(cameras)) != len(cameras):
            p.fail('cameras', f'{cameras!r} names a camera twice')
    variation = _variation(p, doc, layout) if layout else Variation()
    return Scenario(task=task, horizon=p.integer(doc, 'horizon', 1, 10**6),
                    cameras=tuple(cameras) if cameras is not None else None,
                    image_size=p.integer(doc, 'image_size', 8, 1024), instruction=p.typed(doc, 'instruction', str, ''),
                    variation=variation, source=source)


def _variation(p: _Parser, doc: Mapping, layout: TaskLayout) -> Variation:
    obj = p.section(doc, 'object', ('rgba', 'size_scale'))
    table = p.section(doc, 'table', ('rgba',))
    scale = obj.get('size_scale', 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float):
        p.fail('object.size_scale', f'{scale!r} is not a number')
    if not SIZE_SCALE[0] <= scale <= SIZE_SCALE[1]:
        p.fail('object.size_scale', f'{scale} outside [{SIZE_SCALE[0]}, {SIZE_SCALE[1]}]')
    if scale > layout.max_size_scale:
        p.fail('object.size_scale', f'{scale} above {layout.max_size_scale} for this task: {layout.max_scale_reason}')
    place = p.section(doc, 'placement', ('x', 'y', 'yaw'))
    ranges = {}
    for axis in ('x', 'y'):
        r = ranges[axis] = p.range(place, axis, 'placement')
        half = layout.half_size[axis == 'y']
        if r is not None and max(abs(r[0]), abs(r[1])) + layout.object_radius * scale > half:
            p.fail(f'placement.{axis}', f'{list(r)} puts the object off the {layout.surface} '
                                        f'({layout.surface} half-size {half} m)')
    yaw = p.range(place, 'yaw', 'placement')
    if yaw is not None and max(abs(yaw[0]), abs(yaw[1])) > YAW_LIMIT:
        p.fail('placement.yaw', f'{list(yaw)} outside [-2 pi, 2 pi] rad')
    distractor = doc.get('distractor', False)
    if not isinstance(distractor, bool):
        p.fail('distractor', f'{distractor!r} is not true or false')
    return Variation(placement=Placement(ranges['x'], ranges['y'], yaw), object_rgba=p.rgba(obj, 'object'),
                     object_size_scale=float(scale), table_rgba=p.rgba(table, 'table'), distractor=distractor)


class _Parser:
    """Typed reads of a YAML mapping that fail with '<source>: <key>: <reason>'."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, reason: str) -> NoReturn:
        raise ScenarioError(f'{self.source}: {key}: {reason}' if key else f'{self.source}: {reason}')

    def unknown(self, doc: Mapping, known: tuple[str, ...], prefix: str) -> None:
        extra = sorted(str(k) for k in doc if k not in known)
        if extra:
            self.fail(prefix + extra[0], f'unknown key (known: {", ".join(known)})')

    def typed(self, doc: Mapping, key: str, kind: type, default: Any = None) -> Any:
        value = doc.get(key)
        if value is None:  # absent, or 'key:' with nothing after it
            return default
        if not isinstance(value, kind):
            self.fail(key, f'{value!r} is not a {kind.__name__}')
        return value

    def integer(self, doc: Mapping, key: str, lo: int, hi: int) -> int | None:
        value = doc.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f'{value!r} is not an integer')
        if not lo <= value <= hi:
            self.fail(key, f'{value} outside [{lo}, {hi}]')
        return value

    def section(self, doc: Mapping, key: str, known: tuple[str, ...]) -> Mapping:
        value = doc.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(key, f'{value!r} is not a mapping of {", ".join(known)}')
        self.unknown(value, known, f'{key}.')
        return value

    def range(self, doc: Mapping, key: str, section: str) -> Range | None:
        value = doc.get(key)
        if value is None:
            return None
        name = f'{section}.{key}'
        if not (isinstance(value, list) and len(value) == 2 and all(_number(v) for v in value)):
            self.fail(name, f'{value!r} is not [lo, hi]')
        if value[0] > value[1]:
            self.fail(name, f'{value}: lo > hi')
        return float(value[0]), float(value[1])

    def rgba(self, doc: Mapping, section: str) -> RGBA | None:
        value = doc.get('rgba')
        if value is None:
            return None
        name = f'{section}.rgba'
        if not (isinstance(value, list) and len(value) == 4 and all(_number(v) for v in value)):
            self.fail(name, f'{value!r} is not [r, g, b, a]')
        if not all(0.0 <= v <= 1.0 for v in value):
            self.fail(name, f'{value} outside [0, 1]')
        return tuple(float(v) for v in value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
