# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The deploy node graph as data: the one list ``hapo deploy`` and ``deploy.launch.py`` both start.

    camera/sim --image--> policy_node --hapo/policy/action--> mux_node --hapo/cmd--> sim / robot
                                                   joy --------^      \\--> recorder_node (bags)

Parameters come from ``config/deploy.yaml`` (keyed by node name), a scenario (``scenario:=FILE``: task,
horizon, instruction, cameras and image size of the sim, policy and recorder at once) and command-line
overrides ``key:=value`` (every node that declares ``key``) or ``node.key:=value`` (that node only).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hapo_interfaces.params import ParamError, from_mapping


@dataclass(frozen=True)
class NodeSpec:
    """One node of the graph: how to run it and where its parameter schema lives."""

    package: str
    executable: str  # console script (ros2 run / launch_ros)
    name: str
    schema: str  # 'module:Class' of its params dataclass
    optional: str = ''  # graph switch that enables it ('' = always), or 'robot=NAME': that robot's nodes
    module_name: str = ''  # the Python module when it is not <package>.<executable>

    @property
    def module(self) -> str:
        return self.module_name or f'{self.package}.{self.executable}'

    def schema_class(self) -> type:
        mod, cls = self.schema.split(':')
        return getattr(importlib.import_module(mod), cls)


DEPLOY_GRAPH: tuple[NodeSpec, ...] = (
    NodeSpec('hapo_sim', 'sim_node', 'sim_node', 'hapo_sim.sim_params:SimParams', optional='robot=sim'),
    NodeSpec('hapo_policy', 'camera_node', 'camera_node', 'hapo_policy.camera:CameraParams', optional='robot=servo'),
    NodeSpec('hapo_teleop', 'servo_executor', 'servo_executor', 'hapo_teleop.servo:ServoParams',
             optional='robot=servo', module_name='hapo_teleop.servo_executor_node'),
    NodeSpec('hapo_policy', 'policy_node', 'policy_node', 'hapo_policy.policy_params:PolicyParams'),
    NodeSpec('hapo_teleop', 'mux_node', 'mux_node', 'hapo_teleop.mux:MuxParams'),
    NodeSpec('hapo_teleop', 'joy_node', 'joy_node', 'hapo_teleop.joystick:JoyParams', optional='joy'),
    NodeSpec('hapo_recorder', 'recorder_node', 'recorder_node', 'hapo_recorder.params:RecorderParams',
             optional='record'),
    NodeSpec('hapo_sim', 'operator_node', 'operator_node', 'hapo_sim.operator:OperatorParams', optional='operator'),
    NodeSpec('hapo_bringup', 'view_node', 'view_node', 'hapo_bringup.view_server:ViewParams', optional='view'),
)
"""``robot:=`` and the graph switches select the optional nodes: ``robot:=sim`` (the default) the simulated robot,
``robot:=servo`` a real arm (camera_node and servo_executor; see ``ROBOT_LAYERS``), ``robot:=none`` neither (bag
replay, or a robot driver of your own on the same topics); ``record:=false``, ``joy:=false`` where a ROS
``joy`` driver, keyboard_node or nothing publishes ``joy`` instead of our joy_node, and ``operator:=true``: the
simulated operator holds the joystick instead of a person (joy_node off, the mux in ``lockstep_operator``,
every motion dim on an axis, the sim waits for it; see ``OPERATOR_LAYER``), and ``view:=true``: the live operator
view (view_node: a Foxglove WebSocket server, ws://127.0.0.1:8765; its deadman index follows the mux's)."""

SWITCHES = {'record': True, 'joy': True, 'operator': False, 'view': False}
ROBOTS = ('sim', 'servo', 'none')
ROBOT_LAYERS = {'servo': {'mux_node': {'lockstep': False}, 'policy_node': {'match_stamps': False}}}
"""What ``robot:=servo`` sets over config/deploy.yaml: no lockstep sim, so the mux takes a human command every
tick and the policy the newest frame of each camera."""
ALIASES = {'camera': ('camera_node', 'source')}
"""Graph-level names for one node's parameter: ``camera:=0`` is ``camera_node.source:=0``."""
OPERATOR_LAYER = {'mux_node': {'lockstep_operator': True, 'axis_map': [1, 0, 4, 6, 7, 3]}}
"""What ``operator:=true`` sets over config/deploy.yaml (``key:=value`` still wins): with the Xbox map's roll and
pitch unmapped, the expert's orientation hold would be lost."""
JOY_DRIVERS = ('expert_node', 'operator_node')
"""Scripted nodes at the joystick: they drive the sim's task through the mux's mapping (``follow_mux``)."""
JOYSTICK = ('initial_gripper', 'axis_map', 'axis_scale', 'deadzone', 'deadman_button', 'gripper_button')
VIEW_FOLLOWS = ('deadman_button', 'joy_timeout_s')
"""What view_node takes from mux_node: it shows the deadman as the mux reads it."""
OPERATOR_FOLLOWS = ('uncertain_threshold', 'uncertain_hysteresis')
"""What operator_node takes from policy_node: asking for help, it replays the flag the policy raises."""


def config_dir() -> Path:
    """Where config/ lives: $HAPO_CONFIG_DIR, the colcon share directory, or the source checkout."""
    if os.environ.get('HAPO_CONFIG_DIR'):
        return Path(os.environ['HAPO_CONFIG_DIR'])
    here = Path(__file__).resolve()
    checkout = here.parents[3] / 'config'
    if checkout.is_dir():
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory('hapo_bringup')) / 'config'
    except (ImportError, LookupError):
        return checkout


def load_yaml(path: Path) -> dict[str, dict[str, Any]]:
    """``{node: {param: value}}`` from a ROS 2 parameter file; ParamError naming the file on bad input."""
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParamError(f'{path}: cannot read parameters: {exc}') from None
    out = {}
    for node, body in doc.items():
        if not isinstance(body, dict) or not isinstance(body.get('ros__parameters', {}), dict):
            raise ParamError(f'{path}: {node} must hold a ros__parameters mapping')
        out[node.lstrip('/')] = dict(body.get('ros__parameters') or {})
    return out


def parse_overrides(args: Sequence[str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Split ``key:=value`` / ``node.key:=value`` arguments into (global, per-node) overrides."""
    glob: dict[str, str] = {}
    per_node: dict[str, dict[str, str]] = {}
    for arg in args:
        if ':=' not in arg:
            raise ParamError(f'argument {arg!r} is not key:=value')
        key, value = arg.split(':=', 1)
        if '.' in key:
            node, key = key.split('.', 1)
            per_node.setdefault(node, {})[key] = value
        else:
            glob[key] = value
    return glob, per_node


def gamepad_config(name: str) -> Path:
    """``config/joy/<name>.yaml`` for a gamepad name (xbox, ps4), or ``name`` itself if it is a file."""
    path = Path(name)
    if path.is_file():
        return path
    path = config_dir() / 'joy' / f'{name}.yaml'
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir() / 'joy').glob('*.yaml'))
        raise ParamError(f'no gamepad map {name!r}: use one of {known} or a YAML file')
    return path


def scenario_path(name: str) -> Path:
    """A scenario file given as a path, or by name (``lift_far``) from ``config/scenarios/``."""
    path = Path(name)
    if path.is_file():
        return path.resolve()
    by_name = config_dir() / 'scenarios' / f'{name}.yaml'
    if by_name.is_file():
        return by_name
    known = sorted(p.stem for p in (config_dir() / 'scenarios').glob('*.yaml'))
    raise ParamError(f'scenario {name!r}: no such file, and not one of {known} (config/scenarios)')


def scenario_params(path: Path) -> dict[str, dict[str, Any]]:
    """``{node: {param: value}}`` a scenario file sets: the sim's task, scenario, instruction and the horizon,
    cameras and image size it names; the policy's camera_names and instruction; the recorder's and view's cameras."""
    from hapo_sim.env import DEFAULT_INSTRUCTIONS
    from hapo_sim.scenario import ScenarioError, load_scenario

    try:
        scn = load_scenario(path)
    except ScenarioError as exc:
        raise ParamError(str(exc)) from None
    sim = {'task': scn.task, 'scenario': str(path), 'instruction': scn.instruction}
    policy = {'instruction': scn.instruction or DEFAULT_INSTRUCTIONS[scn.task]}
    recorder = {}
    if scn.horizon is not None:
        sim['horizon'] = scn.horizon
    if scn.image_size is not None:
        sim['image_size'] = scn.image_size
    view = {}
    if scn.cameras is not None:
        sim['cameras'] = recorder['cameras'] = view['cameras'] = list(scn.cameras)
        policy['camera_names'] = ','.join(scn.cameras)
    return {'sim_node': sim, 'policy_node': policy, 'recorder_node': recorder, 'view_node': view}


def checkpoint_path(value: str) -> str:
    """A policy checkpoint as given, or, when it is a relative path that does not exist from here, the one of that
    name under the config directory (the shipped ``policies/lift_base``); '' stays '' (an untrained model)."""
    if not value or Path(value).is_absolute() or Path(value).exists():
        return value
    shipped = config_dir() / value
    return str(shipped) if shipped.exists() else value


def checkpoint_params(path: str) -> dict[str, dict[str, Any]]:
    """``{node: {param: value}}`` a tiny-VLA checkpoint needs: the sim renders, and the recorder records, the
    cameras it names at its image size; the policy takes them in the model's order; a real camera publishes as
    the first of them at the model's size (what is recorded is what the model sees). Nothing for a foreign model
    or an unreadable one (policy_node then says what is wrong)."""
    try:
        config = json.loads((Path(path) / 'config.json').read_text())
    except (OSError, ValueError):
        return {}
    if not config.get('camera_names') or not config.get('image_size'):
        return {}
    cams, size = [str(c) for c in config['camera_names']], int(config['image_size'])
    return {'sim_node': {'cameras': cams, 'image_size': size}, 'recorder_node': {'cameras': cams},
            'view_node': {'cameras': cams},
            'policy_node': {'camera_names': ''}, 'camera_node': {'name': cams[0], 'width': size, 'height': size}}


def resolve(config: Path, overrides: Sequence[str], graph: Sequence[NodeSpec] = DEPLOY_GRAPH,
            extra_configs: Sequence[Path] = ()) -> tuple[list[NodeSpec], dict[str, dict[str, Any]]]:
    """The nodes to start and each one's final parameters, validated against its schema.

    Precedence, lowest first: the schema defaults, ``config``, each of ``extra_configs`` (e.g. a
    gamepad map), the scenario (``scenario:=FILE`` or ``sim_node.scenario:=FILE`` on the command line, else
    ``sim_node.scenario`` of the config; see ``scenario_params``), the policy checkpoint's cameras and image size
    (``checkpoint_params``: a policy sees only what it was trained on), ``key:=value``, ``node.key:=value``.
    """
    glob, per_node = parse_overrides(overrides)
    switches = dict(SWITCHES)
    for key in list(glob):
        if key in switches:
            switches[key] = glob.pop(key).lower() == 'true'
    if 'sim' in glob:
        raise ParamError(f'sim:={glob["sim"]} is now robot:=sim|servo|none (servo: a real arm; none: no robot)')
    robot = glob.pop('robot', 'sim')
    if robot not in ROBOTS:
        raise ParamError(f'robot:={robot} is not one of {list(ROBOTS)}')
    for alias, (node, key) in ALIASES.items():
        if alias in glob:
            per_node.setdefault(node, {})[key] = glob.pop(alias)
    extra_configs = list(extra_configs)
    if 'gamepad' in glob:
        extra_configs.append(gamepad_config(glob['gamepad']))
        per_node.setdefault('recorder_node', {}).setdefault('input_device', Path(glob.pop('gamepad')).stem)
    if switches['operator']:
        switches['joy'] = False  # one hand on the joystick
    on = {**switches, **{f'robot={r}': r == robot for r in ROBOTS}}
    nodes = [n for n in graph if not n.optional or on[n.optional]]
    from_file = load_yaml(config)
    for extra in extra_configs:
        for node, values in load_yaml(extra).items():
            from_file.setdefault(node, {}).update(values)
    # A graph-wide setting (it also sets the policy and recorder without the sim), claimed here.
    scenario = per_node.get('sim_node', {}).pop('scenario', None)
    scenario = glob.pop('scenario', None) if scenario is None else scenario
    scenario = from_file.get('sim_node', {}).get('scenario', '') if scenario is None else scenario
    layer = scenario_params(scenario_path(scenario)) if scenario else {'sim_node': {'scenario': ''}}
    for node, values in ROBOT_LAYERS.get(robot, {}).items():
        layer.setdefault(node, {}).update(values)
    if any(n.name == 'operator_node' for n in nodes):
        for node, values in OPERATOR_LAYER.items():
            layer.setdefault(node, {}).update(values)
        waits = [w for w in from_file.get('sim_node', {}).get('wait_for', []) if w]
        layer.setdefault('sim_node', {})['wait_for'] = [*waits, 'operator_node']
    key = 'checkpoint'
    ckpt = per_node.get('policy_node', {}).get(key, glob.get(key, from_file.get('policy_node', {}).get(key, '')))
    served = any(n.name == 'policy_node' for n in nodes)  # a graph without a policy (collect-demos) keeps its own
    if served and ckpt and checkpoint_path(ckpt) != ckpt:
        per_node.setdefault('policy_node', {})[key] = checkpoint_path(ckpt)
    for node, values in (checkpoint_params(checkpoint_path(ckpt)) if served else {}).items():  # the policy's needs
        layer.setdefault(node, {}).update(values)
    unknown = sorted(set(per_node) - {n.name for n in graph})
    if unknown:
        raise ParamError(f'override for unknown node(s) {unknown}; nodes: {[n.name for n in graph]}')
    params: dict[str, dict[str, Any]] = {}
    claimed: set[str] = set()
    for n in nodes:
        cls = n.schema_class()
        names = {f.name for f in dataclasses.fields(cls)}
        values = dict(from_file.get(n.name, {}))
        values.update({k: v for k, v in layer.get(n.name, {}).items() if k in names})
        for key, value in glob.items():
            if key in names:
                values[key] = value
                claimed.add(key)
        values.update(per_node.get(n.name, {}))
        try:
            validated = from_mapping(cls, values)
        except ParamError as exc:
            raise ParamError(f'{n.name}: {exc} ({config})') from None
        params[n.name] = {k: v for k, v in dataclasses.asdict(validated).items() if k in values}
        if 'wait_for' in params[n.name]:  # a node switched off is not waited for
            started = {m.name for m in nodes}
            params[n.name]['wait_for'] = [w for w in params[n.name]['wait_for'] if w in started] or ['']
    unclaimed = sorted(set(glob) - claimed)
    if unclaimed:
        raise ParamError(f'no node declares parameter(s) {unclaimed}; see `hapo deploy --help`')
    follow_mux(params)
    if 'operator_node' in params and 'policy_node' in params:
        from hapo_policy.policy_params import PolicyParams

        policy = from_mapping(PolicyParams, params['policy_node'])
        params['operator_node'].update({k: getattr(policy, k) for k in OPERATOR_FOLLOWS})
    return nodes, params


def follow_mux(params: dict[str, dict[str, Any]]) -> None:
    """Give each scripted joystick node (``JOY_DRIVERS``) in ``params`` the sim's task and the mux's joystick
    mapping: a mapping the mux does not share would drive the robot wrongly; and the view the mux's deadman."""
    drivers = [d for d in JOY_DRIVERS if d in params]
    if 'mux_node' not in params or not (drivers or 'view_node' in params):
        return
    from hapo_teleop.mux import MuxParams

    mux = from_mapping(MuxParams, params['mux_node'])
    if 'view_node' in params:
        params['view_node'].update({k: getattr(mux, k) for k in VIEW_FOLLOWS})
    if not drivers:
        return
    follow = {k: getattr(mux, k) for k in JOYSTICK}
    if 'sim_node' in params:
        from hapo_sim.env import task_key
        from hapo_sim.sim_params import SimParams

        follow['task'] = task_key(from_mapping(SimParams, params['sim_node']).task)
    for d in drivers:
        params[d].update(follow)


LAUNCH_ARGS: tuple[tuple[str, str, str], ...] = (
    ('config', '', 'ROS 2 parameter file keyed by node name (default: config/deploy.yaml)'),
    ('robot', 'sim', 'sim: the simulated robot; servo: a real arm (camera_node + servo_executor for MoveIt Servo); '
                     'none: no robot (bag replay, a driver of your own)'),
    ('camera', '', "robot:=servo: camera_node's source, a device index, video file or stream URL ('' = the "
                   "config's)"),
    ('checkpoint', '', "policy checkpoint (a save_pretrained directory; '' = the config's, the shipped Lift base)"),
    ('instruction', '', "task instruction ('' = the config's or the scenario's)"),
    ('record', 'true', 'record episodes (recorder_node)'),
    ('gamepad', '', "joystick map over the config: xbox, ps4, keyboard (keyboard_node in its own terminal, with "
                    "joy:=false) or a YAML file ('' = the config's, xbox)"),
    ('joy', 'true', "start our joy_node (false: ROS joy's joy_node, keyboard_node or nothing publishes joy)"),
    ('scenario', '', "robot:=sim: a scenario name or file ('' = the config's)"),
    ('operator', 'false', 'the simulated operator takes over instead of a person (robot:=sim)'),
    ('view', 'false', 'the live operator view: a Foxglove WebSocket server (view_node, ws://127.0.0.1:8765; '
                      'layout config/foxglove/operator_layout.json)'),
)
"""The arguments deploy.launch.py declares (``ros2 launch ... --show-args``); ``hapo deploy`` takes the same as
``name:=value``. An empty default means "what the config says"."""


def launch_graph(settings: Mapping[str, str]) -> tuple[list[NodeSpec], dict[str, dict[str, Any]]]:
    """The nodes and parameters of ``ros2 launch hapo_bringup deploy.launch.py`` for its launch configurations:
    the declared arguments (empty ones left to the config) and every other ``key:=value`` as an override."""
    settings = dict(settings)
    config = settings.pop('config', '') or str(config_dir() / 'deploy.yaml')
    empty_is_config = {name for name, default, _ in LAUNCH_ARGS if default == ''}
    overrides = [f'{k}:={v}' for k, v in settings.items() if v != '' or k not in empty_is_config]
    return resolve(Path(config), overrides)


REPLAY_ARGS: tuple[tuple[str, str, str], ...] = (
    ('checkpoint', '', 'the policy to evaluate (required)'),
    ('bags', '', 'episode bags to replay (a directory; required)'),
    ('out', 'runs/replay/live.json', 'result JSON of hapo evaluate --live'),
    ('rate', '1.0', 'replay pace relative to the recording'),
    ('config', '', 'ROS 2 parameter file for policy_node (default: config/deploy.yaml)'),
)
"""The arguments replay.launch.py declares: policy_node alone, fed by ``hapo evaluate --live``."""


def replay_graph(settings: Mapping[str, str]) -> tuple[list[NodeSpec], dict[str, dict[str, Any]], list[str]]:
    """policy_node and its parameters, and the ``hapo evaluate --live`` command (as ``python -m``: a colcon install
    puts ``hapo`` on no PATH) that replays the bags into it and scores its answers, for replay.launch.py."""
    settings = {**{name: default for name, default, _ in REPLAY_ARGS}, **settings}
    for name in ('checkpoint', 'bags'):
        if not settings[name]:
            raise ParamError(f'replay.launch.py needs {name}:=...')
    config = Path(settings['config'] or config_dir() / 'deploy.yaml')
    policy = tuple(n for n in DEPLOY_GRAPH if n.name == 'policy_node')
    nodes, params = resolve(config, [f'checkpoint:={settings["checkpoint"]}'], graph=policy)
    command = [sys.executable, '-m', 'hapo_trainer.evaluate', '--live', '--policy', params['policy_node']['checkpoint'],
               '--bags',
               settings['bags'], '--rate', settings['rate'], '--out', settings['out']]
    return nodes, params, command


def help_text(graph: Sequence[NodeSpec] = DEPLOY_GRAPH, config: Mapping[str, Mapping[str, Any]] | None = None
              ) -> str:
    """Every node's parameters as 'name (type, default): meaning' lines."""
    from hapo_interfaces.params import default_of, describe

    lines = ['graph: robot:=sim|servo|none (sim), camera:=SOURCE (camera_node.source, robot:=servo), '
             'gamepad:=xbox|ps4|keyboard|FILE, ' + ', '.join(f'{k}:={str(v).lower()}' for k, v in SWITCHES.items())]
    for n in graph:
        lines.append(f'\n{n.name} ({n.package}):')
        for f in dataclasses.fields(n.schema_class()):
            current = (config or {}).get(n.name, {}).get(f.name, default_of(f))
            lines.append(f'  {f.name} ({type(default_of(f)).__name__}, {current!r}): {describe(f)}')
    return '\n'.join(lines)
