# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Scenario files: what loads, and a one-line refusal naming the file and the key for each rule (no simulator)."""

from __future__ import annotations

import math

import pytest
import yaml

from hapo_bringup.graph import config_dir
from hapo_sim.scenario import (
    LAYOUTS,
    Placement,
    Scenario,
    ScenarioError,
    Variation,
    load_scenario,
    parse_scenario,
    scenario_variation,
)

SCENARIOS = config_dir() / 'scenarios'
CAMS = ('agentview', 'robot0_eye_in_hand')


def test_plain_lift_is_what_the_base_policy_is_trained_on():
    s = load_scenario(SCENARIOS / 'lift.yaml')
    assert s == Scenario(task='lift', horizon=200, cameras=CAMS, image_size=64, source=str(SCENARIOS / 'lift.yaml'))
    assert s.variation.plain


def test_shipped_scenarios_load():
    names = {p.stem: load_scenario(p) for p in SCENARIOS.glob('*.yaml')}
    assert {'lift', 'lift_far', 'lift_color', 'pick_place_can'} <= set(names)
    assert any(s.task == 'pick_place_can' and not s.variation.plain for s in names.values())
    for path in SCENARIOS.glob('*.yaml'):
        assert path.read_text().startswith('# '), f'{path.name}: no comment header'
    far = names['lift_far'].variation.placement
    assert far.x[0] > 0.03 and far.y[1] < -0.03, 'lift_far must lie outside the demo range (+-0.03 m)'
    assert names['lift_color'].variation.object_rgba != (1.0, 0.0, 0.0, 1.0)
    assert all(s.cameras == CAMS and s.image_size == 64 for s in names.values())


def test_only_task_is_required_and_names_are_normalised():
    s = parse_scenario({'task': 'PickPlaceCan'}, 'x.yaml')
    assert (s.task, s.horizon, s.cameras, s.image_size, s.instruction) == ('pick_place_can', None, None, None, '')
    assert s.variation == Variation() and s.variation.plain
    empty = parse_scenario(yaml.safe_load('task: lift\ninstruction:\nhorizon:\nobject:\nplacement:\n'), 'x.yaml')
    assert empty == Scenario(task='lift', source='x.yaml')


def test_every_key():
    doc = yaml.safe_load('''
        task: lift
        horizon: 150
        cameras: [agentview]
        image_size: 96
        instruction: lift the blue cube
        placement: {x: [0.05, 0.1], y: [-0.1, 0], yaw: [0, 1.5]}
        object: {rgba: [0.1, 0.3, 0.9, 1], size_scale: 1.2}
        table: {rgba: [0.5, 0.4, 0.3, 1]}
        distractor: true''')
    s = parse_scenario(doc, 'x.yaml')
    assert (s.horizon, s.cameras, s.image_size, s.instruction) == (150, ('agentview',), 96, 'lift the blue cube')
    assert s.variation == Variation(Placement((0.05, 0.1), (-0.1, 0.0), (0.0, 1.5)), (0.1, 0.3, 0.9, 1.0), 1.2,
                                    (0.5, 0.4, 0.3, 1.0), True)
    assert not s.variation.plain
    assert parse_scenario({'task': 'lift', 'placement': {'yaw': [0, 0]}}, 'x').variation.placement.x is None


REFUSALS = [  # (document, the message after 'x.yaml: ')
    ([1, 2], 'a scenario is a mapping with at least task:'),
    ({'horizon': 10}, 'task: missing'),
    ({'task': 'juggle'}, "task: unknown task 'juggle'"),
    ({'task': 3}, 'task: 3 is not a task name'),
    ({'task': 'lift', 'colour': 'red'}, 'colour: unknown key (known: task, horizon'),
    ({'task': 'lift', 'object': {'colour': 'red'}}, 'object.colour: unknown key (known: rgba, size_scale)'),
    ({'task': 'lift', 'placement': {'z': [0, 1]}}, 'placement.z: unknown key'),
    ({'task': 'lift', 'horizon': 'long'}, "horizon: 'long' is not an integer"),
    ({'task': 'lift', 'horizon': True}, 'horizon: True is not an integer'),
    ({'task': 'lift', 'horizon': 0}, 'horizon: 0 outside [1, 1000000]'),
    ({'task': 'lift', 'image_size': 4}, 'image_size: 4 outside [8, 1024]'),
    ({'task': 'lift', 'image_size': 64.0}, 'image_size: 64.0 is not an integer'),
    ({'task': 'lift', 'cameras': 'agentview'}, "cameras: 'agentview' is not a non-empty list"),
    ({'task': 'lift', 'cameras': []}, 'cameras: [] is not a non-empty list'),
    ({'task': 'lift', 'cameras': ['agentview', 'agentview']},
     "cameras: ['agentview', 'agentview'] names a camera twice"),
    ({'task': 'lift', 'instruction': 5}, 'instruction: 5 is not a str'),
    ({'task': 'lift', 'placement': {'x': [0.1, 0.5]}},
     'placement.x: [0.1, 0.5] puts the object off the table (table half-size 0.4 m)'),
    ({'task': 'lift', 'placement': {'y': [-0.5, 0]}}, 'placement.y: [-0.5, 0.0] puts the object off the table'),
    ({'task': 'lift', 'placement': {'x': [0.35, 0.36]}, 'object': {'size_scale': 1.3}},
     'placement.x: [0.35, 0.36] puts the object off the table'),  # fits at size_scale 1 (test below)
    ({'task': 'pick_place_can', 'placement': {'x': [0.1, 0.13]}},
     'placement.x: [0.1, 0.13] puts the object off the bin (bin half-size 0.145 m)'),
    ({'task': 'lift', 'placement': {'y': [0.1, -0.1]}}, 'placement.y: [0.1, -0.1]: lo > hi'),
    ({'task': 'lift', 'placement': {'x': [0.1]}}, 'placement.x: [0.1] is not [lo, hi]'),
    ({'task': 'lift', 'placement': {'x': ['a', 'b']}}, "placement.x: ['a', 'b'] is not [lo, hi]"),
    ({'task': 'lift', 'placement': {'x': 0.1}}, 'placement.x: 0.1 is not [lo, hi]'),
    ({'task': 'lift', 'placement': {'yaw': [0, 7]}}, 'placement.yaw: [0.0, 7.0] outside [-2 pi, 2 pi] rad'),
    ({'task': 'lift', 'placement': [0, 1]}, 'placement: [0, 1] is not a mapping of x, y, yaw'),
    ({'task': 'lift', 'object': {'rgba': [1.2, 0, 0, 1]}}, 'object.rgba: [1.2, 0, 0, 1] outside [0, 1]'),
    ({'task': 'lift', 'object': {'rgba': [1, 0, 0]}}, 'object.rgba: [1, 0, 0] is not [r, g, b, a]'),
    ({'task': 'lift', 'table': {'rgba': [0.5, -0.1, 0, 1]}}, 'table.rgba: [0.5, -0.1, 0, 1] outside [0, 1]'),
    ({'task': 'lift', 'table': 'red'}, "table: 'red' is not a mapping of rgba"),
    ({'task': 'lift', 'object': {'size_scale': 0.4}}, 'object.size_scale: 0.4 outside [0.5, 2.0]'),
    ({'task': 'pick_place_can', 'object': {'size_scale': 2.5}}, 'object.size_scale: 2.5 outside [0.5, 2.0]'),
    ({'task': 'lift', 'object': {'size_scale': 'big'}}, "object.size_scale: 'big' is not a number"),
    ({'task': 'lift', 'object': {'size_scale': 1.5}}, 'object.size_scale: 1.5 above 1.3 for this task'),
    ({'task': 'lift', 'distractor': 'yes'}, "distractor: 'yes' is not true or false"),
    ({'task': 'stack', 'distractor': True}, "distractor: not supported for task 'stack'"),
]


@pytest.mark.parametrize(('doc', 'message'), REFUSALS, ids=[m.split(':')[0] + f'-{i}' for i, (_, m) in
                                                            enumerate(REFUSALS)])
def test_refusals_name_the_file_and_the_key_in_one_line(doc, message):
    with pytest.raises(ScenarioError) as info:
        parse_scenario(doc, 'x.yaml')
    text = str(info.value)
    assert text.startswith(f'x.yaml: {message}'), text
    assert '\n' not in text
    assert isinstance(info.value, ValueError)


def test_limits_are_inclusive():
    ok = parse_scenario({'task': 'lift', 'placement': {'x': [0.35, 0.36], 'yaw': [-2 * math.pi, 2 * math.pi]},
                         'object': {'rgba': [0, 0, 0, 1], 'size_scale': 0.5}}, 'x')
    assert ok.variation.object_size_scale == 0.5
    lift = LAYOUTS['lift']
    edge = lift.half_size[0] - lift.object_radius
    placement = parse_scenario({'task': 'lift', 'placement': {'x': [-edge, edge]}}, 'x').variation.placement
    assert placement.x == (-edge, edge)


def test_unreadable_files_fail_in_one_line(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('task: lift\nplacement: {x: [0.1, \n')
    for path, message in ((bad, 'cannot read scenario'), (tmp_path / 'none.yaml', 'cannot read scenario')):
        with pytest.raises(ScenarioError) as info:
            load_scenario(path)
        assert str(info.value).startswith(f'{path}: {message}') and '\n' not in str(info.value)
    empty = tmp_path / 'empty.yaml'
    empty.write_text('# nothing\n')
    with pytest.raises(ScenarioError, match='empty.yaml: a scenario is a mapping'):
        load_scenario(empty)


def test_scenario_variation_checks_the_task():
    assert scenario_variation('', 'lift') is None
    assert scenario_variation(str(SCENARIOS / 'lift_far.yaml'), 'Lift').placement.x == (0.06, 0.12)
    with pytest.raises(ScenarioError, match="can.yaml: task: 'pick_place_can', but the sim runs task 'lift'"):
        scenario_variation(str(SCENARIOS / 'pick_place_can.yaml'), 'lift')
