# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The operator view's derived state without ROS: the episode counter, the safety state, the rate gate; the shipped
Foxglove layout matches its generator and reads only topics the view serves or a bag holds; view:=true."""

from __future__ import annotations

import json

import pytest

from hapo_bringup.graph import config_dir, resolve
from hapo_bringup.view_layout import layout_text, operator_layout
from hapo_bringup.view_state import RateGate, SafetyState, ViewCounter
from hapo_interfaces import topics
from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.records import EpisodeMessage, ExecutedStep

E, S = EpisodeEvent, ControlSource
P, H, N, X = S.POLICY, S.HUMAN, S.NONE, S.STOPPED


def run(stream) -> dict:
    """Feed ('e', EpisodeEvent, extra) and ('s', ControlSource) items; return the snapshot."""
    c = ViewCounter()
    for t, item in enumerate(stream):
        if item[0] == 'e':
            c.event(EpisodeMessage(item[1], t, 'test', dict(item[2]) if len(item) > 2 else {}))
        else:
            c.step(ExecutedStep(t, (0.0,) * 7, item[1]))
    return c.snapshot()


START = ('e', E.START, {'seed': 7})


@pytest.mark.parametrize(('stream', 'expected'), [
    ([], {'episodes': 0, 'successes': 0, 'success_rate': None, 'steps': 0, 'intervention_ratio': None}),
    # one success: 3 policy steps and 1 human step of 4; holds are not steps
    ([START, ('s', P), ('s', P), ('e', E.INTERVENTION_START), ('s', H), ('s', N), ('s', P), ('e', E.SUCCESS)],
     {'episodes': 1, 'successes': 1, 'success_rate': 1.0, 'steps': 4, 'human_steps': 1, 'hold_steps': 1,
      'intervention_ratio': 0.25, 'interventions': 1, 'last_outcome': 'success'}),
    # success, failure, abort: 1 of 3; a second end event of one episode is counted apart
    ([START, ('s', H), ('e', E.SUCCESS), ('e', E.SUCCESS), START, ('s', P), ('e', E.FAILURE), START, ('s', X),
      ('e', E.ABORT)],
     {'episodes': 3, 'successes': 1, 'failures': 1, 'aborts': 1, 'success_rate': 0.3333, 'steps': 2,
      'human_steps': 1, 'intervention_ratio': 0.5, 'duplicate_end_events': 1, 'last_outcome': 'abort'}),
    # a view started mid-episode counts that episode's end, and its steps from then on
    ([('s', P), ('s', H), ('e', E.FAILURE)], {'episodes': 1, 'failures': 1, 'success_rate': 0.0, 'steps': 2}),
])
def test_counter(stream, expected):
    snap = run(stream)
    assert {k: snap[k] for k in expected} == expected


def test_counter_keeps_the_current_episode_apart():
    snap = run([START, ('s', H), ('e', E.SUCCESS), ('e', E.START, {'seed': 8}), ('s', P), ('s', P), ('s', H)])
    assert snap['episode'] == {'index': 2, 'open': True, 'seed': 8, 'steps': 3, 'human_steps': 1,
                               'intervention_ratio': 0.3333}
    assert (snap['steps'], snap['human_steps'], snap['episodes']) == (4, 2, 1)
    json.dumps(snap)  # what goes on the JSON channel


S0 = 1_000_000_000  # ns


@pytest.mark.parametrize(('inputs', 'now', 'expected'), [
    ([], 0, {'source': 'unknown', 'deadman_held': False, 'joy_fresh': False, 'estop_latched': False,
             'mux_mode': 'unknown'}),
    ([('joy', 0, [0, 0, 0, 0, 1])], S0 // 10, {'deadman_held': True, 'joy_fresh': True}),
    ([('joy', 0, [0, 0, 0, 0, 1])], S0, {'deadman_held': False, 'joy_fresh': False}),  # stale after 0.5 s
    ([('joy', 0, [1, 1])], 0, {'deadman_held': False}),  # too few buttons: not held
    ([('cmd', 0, H)], 0, {'source': 'human', 'estop_latched': False}),
    ([('cmd', 0, X)], 0, {'source': 'stopped', 'estop_latched': True}),
    ([('cmd', 0, X), ('cmd', 5, P)], 5, {'source': 'policy', 'estop_latched': False}),  # reset
    # the newer report wins: the mux's diagnostics after a stopped command, and a command after the diagnostics
    ([('cmd', 0, X), ('mode', 5, 'policy')], 5, {'estop_latched': False, 'mux_mode': 'policy'}),
    ([('mode', 0, 'stopped'), ('cmd', 5, N)], 5, {'estop_latched': False, 'source': 'none'}),
    ([('cmd', 0, P), ('mode', 5, 'stopped')], 5, {'estop_latched': True, 'source': 'policy'}),
])
def test_safety(inputs, now, expected):
    s = SafetyState(deadman_button=4, joy_timeout_s=0.5)
    for kind, t, value in inputs:
        {'joy': s.joy, 'cmd': s.command, 'mode': s.mux_mode}[kind](t, value)
    snap = s.snapshot(now)
    assert {k: snap[k] for k in expected} == expected


def test_rate_gate_keeps_its_cadence_and_zero_lets_nothing_through():
    gate = RateGate(10.0)
    frames = range(0, 2 * S0, S0 // 30)  # 30 Hz for 2 s
    passed = [t for t in frames if gate.due(t)]
    assert len(passed) == 20 and passed[0] == 0
    assert not any(RateGate(0.0).due(t) for t in frames)


def test_the_shipped_layout_is_generated_and_reads_served_or_recorded_topics():
    path = config_dir() / 'foxglove' / 'operator_layout.json'
    assert path.read_text() == layout_text(), 'regenerate: python -m hapo_bringup.view_layout > ' + str(path)
    layout = operator_layout()
    recorded = {'/' + t for t in (topics.CMD, topics.POLICY_ACTION, topics.POLICY_ENTROPY, topics.EPISODE,
                                  topics.INSTRUCTION, *(topics.camera_topic(c) for c in ('agentview',
                                                                                        'robot0_eye_in_hand')))}
    served = recorded | {'/' + t for t in (topics.POLICY_UNCERTAIN, topics.OPERATOR, 'hapo/view/counter',
                                            'hapo/view/safety', 'hapo/view/log')}
    used = set()
    for key, cfg in layout['configById'].items():
        paths = [cfg.get('path'), cfg.get('topicPath'), cfg.get('topicToRender'),
                 cfg.get('imageMode', {}).get('imageTopic'), *(p['value'] for p in cfg.get('paths', []))]
        used |= {p.split('.')[0] for p in paths if p}
        assert any(p for p in paths), f'{key} reads no topic'
    assert used == served
    placed = set()

    def walk(node):
        if isinstance(node, str):
            placed.add(node)
        else:
            walk(node['first'])
            walk(node['second'])
    walk(layout['layout'])
    assert placed == set(layout['configById']), 'every panel placed, every placed panel configured'


def test_view_switch_starts_the_view_with_the_mux_deadman():
    nodes, params = resolve(config_dir() / 'deploy.yaml', [])
    assert 'view_node' not in {n.name for n in nodes}
    nodes, params = resolve(config_dir() / 'deploy.yaml', ['view:=true', 'deadman_button:=6', 'view_node.port:=9001'])
    assert 'view_node' in {n.name for n in nodes}
    assert params['view_node']['deadman_button'] == params['mux_node']['deadman_button'] == 6
    assert params['view_node']['port'] == 9001 and params['view_node']['joy_timeout_s'] == 0.5
