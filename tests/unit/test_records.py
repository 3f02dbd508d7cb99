# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The message contract's readers name the bad field (bench/faults_malformed.py counts on it)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from hapo_interfaces.records import ACTION_LIMIT, RecordError, decode_event, read_action
from hapo_interfaces.topics import ACTION_DIMS


def action(values, names=ACTION_DIMS):
    return SimpleNamespace(name=list(names), position=list(values))


@pytest.mark.parametrize(('values', 'names', 'match'), [
    ([0.1] * 6, ACTION_DIMS[:6], r'^position: 6 values, expected 7'),
    ([0.1] * 7, [f'j{i}' for i in range(7)], r'^name: '),
    ([0.1, float('nan')] + [0.1] * 5, ACTION_DIMS, r'^position\[1\] \(y\) = nan: not finite'),
    ([0.1] * 3 + [float('-inf')] + [0.1] * 3, ACTION_DIMS, r'^position\[3\] \(roll\) = -inf: not finite')])
def test_read_action_names_the_bad_field(values, names, match):
    with pytest.raises(RecordError, match=match):
        read_action(action(values, names))


def test_an_action_to_execute_stays_within_the_limit():
    values = [5.0] + [0.1] * 6
    assert read_action(action(values)) == tuple(values)  # a proposal as recorded: no limit
    with pytest.raises(RecordError, match=r'^position\[0\] \(x\) = 5.0: outside \[-1, 1\]'):
        read_action(action(values), ACTION_LIMIT)
    assert read_action(action([-1.0] + [1.0] * 6), ACTION_LIMIT)[0] == -1.0


@pytest.mark.parametrize(('body', 'match'), [
    ({'event': 'explode', 'stamp_ns': 1}, r"field 'event': 'explode' is not one of \['start'"),
    ({'stamp_ns': 1}, r"field 'event': None is not one of"),
    ({'event': 'start'}, r"field 'stamp_ns' missing")])
def test_decode_event_names_the_bad_field(body, match):
    with pytest.raises(RecordError, match=match):
        decode_event(json.dumps(body))
    with pytest.raises(RecordError, match='not JSON'):
        decode_event('{"event": "start", ')
