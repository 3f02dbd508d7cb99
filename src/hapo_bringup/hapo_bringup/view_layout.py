# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The Foxglove layout of the operator view, as data: config/foxglove/operator_layout.json is generated from it.

    python -m hapo_bringup.view_layout > config/foxglove/operator_layout.json   (a test checks they match)

The layout file format of the Foxglove app's "Import from file..." (``configById`` + a ``layout`` split tree). Every
panel reads a topic name that ``hapo view`` serves and, where the content is the recorded one, that a bag holds
too (the recorder's absolute names): the same layout opens a live graph and a recorded episode. On a bag, what
only the view derives (/hapo/view/*) stays empty, and so does /hapo/policy/uncertain unless the recorder was given
it in ``extra_topics``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from hapo_bringup.view_server import COUNTER, LOG, SAFETY
from hapo_interfaces import topics

CAMERAS = ('agentview', 'robot0_eye_in_hand')  # the shipped base's cameras; a panel of an absent one stays empty
GREEN, RED, ORANGE, GREY, BLUE = '#2e7d32', '#d32f2f', '#f57c00', '#757575', '#1565c0'


def _abs(name: str) -> str:
    return '/' + name.lstrip('/')


def _series(topic: str, dims: range, label: str, dashed: bool = False) -> list[dict[str, Any]]:
    return [{'value': f'{_abs(topic)}.position[{i}]', 'enabled': True, 'timestampMethod': 'receiveTime',
             'label': f'{topics.ACTION_DIMS[i]} {label}', **({'lineStyle': 'dashed'} if dashed else {})} for i in dims]


def _plot(title: str, paths: list[dict[str, Any]]) -> dict[str, Any]:
    return {'foxglovePanelTitle': title, 'paths': paths, 'showLegend': True, 'legendDisplay': 'floating',
            'showXAxisLabels': True, 'showYAxisLabels': True, 'isSynced': True, 'xAxisVal': 'timestamp',
            'followingViewWidth': 20}


def _indicator(title: str, path: str, rules: list[tuple[str, str, str]], fallback: tuple[str, str],
               font_size: int = 24) -> dict[str, Any]:
    return {'foxglovePanelTitle': title, 'path': path, 'style': 'background', 'fontSize': font_size,
            'rules': [{'operator': '=', 'rawValue': raw, 'color': color, 'label': label}
                      for raw, color, label in rules],
            'fallbackColor': fallback[0], 'fallbackLabel': fallback[1]}


def _raw(title: str, topic: str) -> dict[str, Any]:
    return {'foxglovePanelTitle': title, 'topicPath': _abs(topic), 'diffEnabled': False, 'diffMethod': 'custom',
            'diffTopicPath': '', 'showFullMessageForDiff': False, 'expansion': 'all'}


def _split(direction: str, first: Any, second: Any, percent: float) -> dict[str, Any]:
    return {'direction': direction, 'first': first, 'second': second, 'splitPercentage': percent}


def _chain(direction: str, *items: str) -> Any:
    """Items side by side in equal shares (a split tree is binary)."""
    if len(items) == 1:
        return items[0]
    return _split(direction, items[0], _chain(direction, *items[1:]), round(100 / len(items), 1))


def operator_layout(cameras: tuple[str, ...] = CAMERAS) -> dict[str, Any]:
    """The layout: cameras over the plots on the left; the uncertain flag, who drives, deadman and e-stop, the
    counter and the event log on the right."""
    config: dict[str, dict[str, Any]] = {}
    for cam in cameras:
        config[f'Image!{cam}'] = {'foxglovePanelTitle': cam,
                                  'imageMode': {'imageTopic': _abs(topics.camera_topic(cam))}}
    config['Plot!translation'] = _plot('command (solid) vs policy proposal: x y z gripper',
                                       _series(topics.CMD, range(3), 'cmd') + _series(topics.CMD, range(6, 7), 'cmd')
                                       + _series(topics.POLICY_ACTION, range(3), 'policy', True)
                                       + _series(topics.POLICY_ACTION, range(6, 7), 'policy', True))
    config['Plot!rotation'] = _plot('command (solid) vs policy proposal: roll pitch yaw',
                                    _series(topics.CMD, range(3, 6), 'cmd')
                                    + _series(topics.POLICY_ACTION, range(3, 6), 'policy', True))
    config['Plot!entropy'] = _plot('policy entropy per action dim [nats]',
                                   _series(topics.POLICY_ENTROPY, range(topics.ACTION_DIM), 'entropy'))
    config['Indicator!uncertain'] = _indicator(
        'policy uncertain', f'{_abs(topics.POLICY_UNCERTAIN)}.data', [('true', RED, 'POLICY UNCERTAIN')],
        (GREEN, 'policy confident'), font_size=40)
    config['Indicator!source'] = _indicator(
        'who drives (executed command)', f'{_abs(topics.CMD)}.header.frame_id',
        [('policy', GREEN, 'POLICY'), ('human', ORANGE, 'HUMAN'), ('stopped', RED, 'E-STOP'), ('none', GREY, 'HOLD')],
        (GREY, 'no command'))
    config['Indicator!deadman'] = _indicator(
        'deadman', f'{_abs(SAFETY)}.deadman_held', [('true', ORANGE, 'DEADMAN HELD')], (BLUE, 'deadman released'))
    config['Indicator!estop'] = _indicator(
        'e-stop', f'{_abs(SAFETY)}.estop_latched', [('true', RED, 'E-STOP LATCHED')], (GREEN, 'e-stop clear'))
    config['Table!counter'] = {'foxglovePanelTitle': 'episodes, success rate, intervention ratio',
                               'topicPath': _abs(COUNTER)}
    config['RawMessages!episode'] = _raw('last episode event', topics.EPISODE)
    config['RawMessages!operator'] = _raw('last operator event', topics.OPERATOR)
    config['RawMessages!instruction'] = _raw('instruction', topics.INSTRUCTION)
    config['RosOut!events'] = {'foxglovePanelTitle': 'episode and operator events, warnings',
                               'topicToRender': _abs(LOG), 'searchTerms': [], 'minLogLevel': 1}
    left = _split('column', _chain('row', *(f'Image!{c}' for c in cameras)),
                  _chain('column', 'Plot!translation', 'Plot!rotation', 'Plot!entropy'), 40)
    flags = _split('column', 'Indicator!uncertain',
                   _chain('row', 'Indicator!source', 'Indicator!deadman', 'Indicator!estop'), 55)
    events = _split('column', _chain('row', 'RawMessages!episode', 'RawMessages!operator'),
                    _split('column', 'RosOut!events', 'RawMessages!instruction', 75), 35)
    right = _split('column', flags, _split('column', 'Table!counter', events, 35), 30)
    return {'configById': config, 'globalVariables': {}, 'userNodes': {}, 'playbackConfig': {'speed': 1},
            'layout': _split('row', left, right, 62)}


def layout_text() -> str:
    """The file's exact text."""
    return json.dumps(operator_layout(), indent=2, sort_keys=True) + '\n'


def main(argv: list[str] | None = None) -> int:
    sys.stdout.write(layout_text())
    return 0


if __name__ == '__main__':
    sys.exit(main())
