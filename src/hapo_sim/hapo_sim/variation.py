# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""A scenario's ``Variation`` applied to a robosuite task while its MJCF model is built; no ROS.

robosuite compiles the model inside the environment's constructor (with ``hard_reset=False`` never again),
and a compiled model does not follow a changed size (bounding volumes, mass, inertia, and the placement
sampler's idea of the object's height stay the old ones). So the variation goes in before compiling:
``varied_class(Lift)`` is a subclass whose ``_load_model`` runs robosuite's own and then edits the MJCF tree
it built, which MuJoCo then compiles as usual:

- ``object.size_scale``: robosuite's ``set_scale`` on the task object (geom sizes and positions, meshes, sites);
  a primitive's ``size`` too, so the sampler puts the bigger object on the surface. Mass follows by density.
- ``object.rgba`` / ``table.rgba``: every geom of the object (or of the surface bodies, legs excepted) gets the
  colour, collision and visual geoms alike (our renderer draws both groups), and loses its material, so the
  colour is exactly the one declared.
- ``placement``: the task object gets a sampler of its own, first in the placement order, with the declared
  ranges around robosuite's placement centre (an axis not declared keeps robosuite's range).
- ``distractor``: a green box (``DISTRACTOR_*``) merged into the model and placed after the task object, never
  overlapping it; its position is ``object_state['distractor_pos']``.

A plain Variation never comes here: ``SimEnv`` then makes robosuite's own class, so nothing changes.
"""

from __future__ import annotations

import types

import numpy as np

from hapo_sim.scenario import Placement, Variation

SURFACE_BODIES = {'lift': ('table',), 'pick_place_can': ('bin1', 'bin2')}
"""The bodies ``table.rgba`` colours: Lift's table, PickPlaceCan's two bins."""

DISTRACTOR_NAME = 'distractor'
DISTRACTOR_HALF_M = 0.02  # half-size of the distractor box (Lift's cube is 0.020-0.022)
DISTRACTOR_RGBA = (0.15, 0.65, 0.2, 1.0)
DISTRACTOR_PLACE_M = {'lift': (0.12, 0.12, 0.01), 'pick_place_can': (0.11, 0.16, 0.03)}
"""Per task: half-ranges (x, y) of the distractor's centre around the task's placement centre, near the task
object and on its surface (PickPlaceCan: inside bin1), and the drop height above the placement centre (Lift's
centre is the table top, PickPlaceCan's the bin body 0.02 m under its floor)."""


def task_object(env, task: str):
    """The robosuite object a scenario's ``object`` and ``placement`` refer to."""
    return env.cube if task == 'lift' else env.objects[env.object_id]


class _Varied:
    """Mixin before a robosuite task class: applies ``variation`` to the MJCF model before it is compiled."""

    def __init__(self, *args, variation: Variation, task: str, **kwargs):
        self._variation, self._task = variation, task
        super().__init__(*args, **kwargs)

    def _load_model(self):
        super()._load_model()
        apply(self, self._task, self._variation)


_CLASSES: dict[type, type] = {}


def varied_class(base: type) -> type:
    """``base`` (a robosuite task class) taking ``variation=`` and ``task=``; made once per base.

    robosuite registers every environment class by name, so this one is known as ``Varied<Base>`` too.
    """
    if base not in _CLASSES:
        _CLASSES[base] = types.new_class(f'Varied{base.__name__}', (_Varied, base))
    return _CLASSES[base]


def apply(env, task: str, v: Variation) -> None:
    """Edit ``env.model`` (built, not compiled) and ``env.placement_initializer`` for ``v``."""
    obj = task_object(env, task)
    if v.object_size_scale != 1.0:
        _scale(obj, v.object_size_scale)
    if v.object_rgba is not None:
        _colour(obj.get_obj().iter('geom'), v.object_rgba)
    if v.table_rgba is not None:
        for name in SURFACE_BODIES[task]:
            body = env.model.worldbody.find(f".//body[@name='{name}']")
            _colour((g for g in body.findall('geom') if 'leg' not in g.get('name', '')), v.table_rgba)
    if not v.placement.default:
        _own_sampler(env, obj, v.placement)
    if v.distractor:
        _add_distractor(env, task)


def _scale(obj, s: float) -> None:
    obj.set_scale(s)
    if hasattr(obj, 'size'):  # a primitive (Lift's BoxObject): its offsets and radius come from ``size``
        obj.size = [v * s for v in obj.size]


def _colour(geoms, rgba) -> None:
    text = ' '.join(f'{c:g}' for c in rgba)
    for geom in geoms:
        geom.set('rgba', text)
        geom.attrib.pop('material', None)


def _own_sampler(env, obj, placement: Placement) -> None:
    from robosuite.utils.placement_samplers import SequentialCompositeSampler, UniformRandomSampler

    top = env.placement_initializer
    subs = list(top.samplers.values()) if isinstance(top, SequentialCompositeSampler) else [top]
    holder = next(s for s in subs if obj in s.mujoco_objects)
    r = obj.horizontal_radius if holder.ensure_object_boundary_in_range else 0.0

    def default(lo_hi):
        return (lo_hi[0] + r, lo_hi[1] - r)  # where robosuite puts the centre

    own = UniformRandomSampler(
        name=f'{obj.name}ScenarioSampler', mujoco_objects=obj, x_range=placement.x or default(holder.x_range),
        y_range=placement.y or default(holder.y_range),
        rotation=placement.yaw if placement.yaw is not None else holder.rotation,
        rotation_axis=holder.rotation_axis, ensure_object_boundary_in_range=False,
        ensure_valid_placement=holder.ensure_valid_placement, reference_pos=holder.reference_pos,
        z_offset=holder.z_offset, rng=env.rng)
    holder.mujoco_objects.remove(obj)
    rest = [s for s in subs if s.mujoco_objects]
    if not rest:  # Lift: the object had the only sampler
        env.placement_initializer = own
        return
    composite = SequentialCompositeSampler(name=top.name)
    for sampler in (own, *rest):  # the task object first: the others keep clear of it
        composite.append_sampler(sampler)
    env.placement_initializer = composite


def _add_distractor(env, task: str) -> None:
    from robosuite.models.objects import BoxObject
    from robosuite.utils.placement_samplers import SequentialCompositeSampler, UniformRandomSampler

    box = BoxObject(name=DISTRACTOR_NAME, size=[DISTRACTOR_HALF_M] * 3, rgba=list(DISTRACTOR_RGBA))
    _colour(box.get_obj().iter('geom'), DISTRACTOR_RGBA)
    env.model.merge_objects([box])
    env.model.mujoco_objects.append(box)
    top = env.placement_initializer
    if not isinstance(top, SequentialCompositeSampler):
        composite = SequentialCompositeSampler(name=top.name)
        composite.append_sampler(top)
        top = env.placement_initializer = composite
    task_sampler = next(s for s in top.samplers.values() if task_object(env, task) in s.mujoco_objects)
    hx, hy, dz = DISTRACTOR_PLACE_M[task]
    top.append_sampler(UniformRandomSampler(
        name='DistractorSampler', mujoco_objects=box, x_range=(-hx, hx), y_range=(-hy, hy), rotation=None,
        ensure_object_boundary_in_range=False, ensure_valid_placement=True,
        reference_pos=np.array(task_sampler.reference_pos), z_offset=dz, rng=env.rng))
