# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``hapo <verb>``: the one command a pip install puts on PATH (ROS users also have ``ros2 launch`` / ``ros2 run``).

    hapo deploy [key:=value ...] [--scenario FILE|NAME] [--config config/deploy.yaml] [--duration S]
    hapo node NAME [--ros-args ...]                    (one node, as ``ros2 run <package> NAME`` would start it)
    hapo bag-info DIR...
    hapo export-lerobot --bags DIR... --out DIR [--fps N]   (episode bags -> a LeRobot v3.0 dataset)
    hapo view [--host H] [--port P] [key:=value ...]   (the live operator view: Foxglove WebSocket)
    hapo collect-demos --episodes N --out DIR [--scenario S] [--seeds A:B] [--workers 2] [key:=value ...]
    hapo round|loop --policy CKPT --scenario S --episodes M --method NAME --out DIR ...
    hapo dataset|optimize|evaluate|compare|import-stats ...   (see ``hapo <verb> --help``)
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys
from pathlib import Path

from hapo_interfaces.params import ParamError

# verb -> ('module', 'help'); each module has main(argv) -> int
VERBS = {
    'deploy': ('hapo_bringup.cli', 'run the deploy graph: sim (or robot), policy, mux, recorder'),
    'node': ('hapo_bringup.cli', 'run one node: hapo node NAME [--ros-args ...] (hapo node --help lists them)'),
    'bag-info': ('hapo_recorder.info', 'one line per recorded episode'),
    'export-lerobot': ('hapo_recorder.lerobot_export', 'episode bags -> a LeRobot v3.0 dataset (parquet, mp4, '
                                                       'meta/), one frame per executed step'),
    'dataset': ('hapo_trainer.dataset', 'bags -> preference dataset (cached) + summary.json'),
    'optimize': ('hapo_trainer.optimize', 'fine-tune a policy on recorded episodes (HAPO and baselines)'),
    'train-base': ('hapo_bringup.train_base', 'BC from a fresh model on demos, kept at its best closed-loop epoch'),
    'evaluate': ('hapo_trainer.evaluate', 'replay recorded episodes through a policy'),
    'collect-demos': ('hapo_bringup.collect_demos', 'scripted expert demos through the graph (Joy via the mux) into '
                                                    'demo bags'),
    'evaluate-sim': ('hapo_bringup.evaluate_sim', 'closed-loop success of a checkpoint on sim seeds (the graph)'),
    'demo': ('hapo_bringup.demo', 'the loop end to end: shipped base -> a round on lift_far with the simulated '
                                  'operator -> before/after table (./run.sh)'),
    'round': ('hapo_bringup.deploy_round', 'one deployment round: deploy with the simulated operator, optimize, '
                                           'evaluate before/after'),
    'loop': ('hapo_bringup.loop', 'deployment rounds chained, each deploying the previous round\'s policy'),
    'experiment': ('hapo_bringup.experiment', 'the protocol of config/experiment.yaml: every arm against the base on '
                                             'paired seeds, cached and resumable; `report` for the README'),
    'uncertainty': ('hapo_bringup.uncertainty_report', "how often and how early the policy's uncertainty flag "
                                                       'precedes the operator\'s takeovers (from bags)'),
    'view': ('hapo_bringup.view_node', 'the live operator view of a running graph: a Foxglove WebSocket server '
                                       '(ws://127.0.0.1:8765; layout config/foxglove/operator_layout.json)'),
    'compare': ('hapo_trainer.compare', 'paired comparison of two evaluate-sim results (exact McNemar)'),
    'import-stats': ('hapo_policy.import_stats', "an OpenVLA checkpoint's norm_stats[unnorm_key] -> action_stats.json"),
}


def deploy(argv: list[str]) -> int:
    from hapo_bringup.graph import config_dir, gamepad_config, help_text, load_yaml, resolve
    from hapo_bringup.runner import GraphRunner

    default_config = config_dir() / 'deploy.yaml'
    ap = argparse.ArgumentParser(
        prog='hapo deploy', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Start the deploy graph (same nodes and parameters as `ros2 launch hapo_bringup '
                    'deploy.launch.py`). Ctrl-C stops every node cleanly.',
        epilog='parameters (override with key:=value or node.key:=value):\n' + _safe_help(help_text, load_yaml,
                                                                                           default_config))
    ap.add_argument('overrides', nargs='*', metavar='key:=value', help='parameter overrides')
    ap.add_argument('--config', type=Path, default=default_config, help='ROS 2 parameter YAML (default: %(default)s)')
    ap.add_argument('--scenario', default=None, metavar='FILE|NAME',
                    help='scenario over --config: task, horizon, cameras and image size of sim, policy and recorder '
                         '(a file, or a name from config/scenarios: lift, lift_far, ...); the same as scenario:=FILE')
    ap.add_argument('--gamepad', default=None, metavar='NAME|YAML',
                    help='gamepad map merged over --config: xbox (the defaults), ps4, or a YAML file')
    ap.add_argument('--duration', type=float, default=None, help='stop after this many seconds (default: run '
                                                                 'until Ctrl-C)')
    ap.add_argument('--dry-run', action='store_true', help='print the resolved parameters and exit')
    args = ap.parse_args(argv)
    try:
        extra = [gamepad_config(args.gamepad)] if args.gamepad else []
        overrides = [f'scenario:={args.scenario}'] * (args.scenario is not None) + args.overrides
        nodes, params = resolve(args.config, overrides, extra_configs=extra)
    except ParamError as exc:
        print(f'hapo deploy: {exc}', file=sys.stderr)
        return 2
    if args.dry_run:
        import yaml

        print(yaml.safe_dump({n.name: params[n.name] for n in nodes}, sort_keys=True))
        return 0
    print(f'[hapo] starting {", ".join(n.name for n in nodes)} (config {args.config}); Ctrl-C to stop', flush=True)
    runner = GraphRunner(nodes, params)
    runner.start()
    return runner.wait(args.duration)


def node_modules() -> dict[str, str]:
    """``{name: module}`` of every node the installed packages declare (entry points ``hapo.nodes``)."""
    return dict(sorted((ep.name, ep.module) for ep in importlib.metadata.entry_points(group='hapo.nodes')))


def node(argv: list[str]) -> int:
    """Replace this process by ``python -m <package>.<NAME> ARGS`` (what the graph runner starts, too)."""
    modules = node_modules()
    ap = argparse.ArgumentParser(
        prog='hapo node', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Run one node in the foreground until Ctrl-C; every argument after NAME goes to the node.',
        epilog='nodes:\n' + '\n'.join(f'  {name:<14} {module}' for name, module in modules.items())
               + '\n\nexample: hapo node mux_node --ros-args --params-file config/deploy.yaml')
    ap.add_argument('name', metavar='NAME', help='a node name from the list below')
    ap.add_argument('args', nargs=argparse.REMAINDER, help='node arguments, e.g. --ros-args -p key:=value')
    args = ap.parse_args(argv)
    if args.name not in modules:
        print(f'hapo node: no node {args.name!r}; nodes: {", ".join(modules)}', file=sys.stderr)
        return 2
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, '-m', modules[args.name], *args.args])


def _safe_help(help_text, load_yaml, config: Path) -> str:
    try:
        return help_text(config=load_yaml(config))
    except (ParamError, ImportError) as exc:
        return f'  (parameter list unavailable: {exc})'


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help') or argv[0] not in VERBS:
        width = max(map(len, VERBS))
        print('usage: hapo <verb> [args]  (hapo <verb> --help for details)\n\nverbs:')
        for verb, (_, text) in VERBS.items():
            print(f'  {verb:<{width}}  {text}')
        if argv and argv[0] not in ('-h', '--help'):
            print(f'\nhapo: unknown verb {argv[0]!r}', file=sys.stderr)
            return 2
        return 0
    verb, rest = argv[0], argv[1:]
    if verb == 'deploy':
        return deploy(rest)
    if verb == 'node':
        return node(rest)
    module = importlib.import_module(VERBS[verb][0])
    return int(module.main(rest) or 0)


if __name__ == '__main__':
    sys.exit(main())
