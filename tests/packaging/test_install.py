# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The workspace's two installs, from the checkout as the README gives them.

pip (scripts/setup.sh, this test's own virtual environment): one command on PATH, ``hapo``; ``hapo node NAME``
starts any node. colcon (``colcon build`` of every package under src/, plain and ``--symlink-install``, into a
temporary directory): the install tree ``ros2 run`` / ``ros2 launch`` rely on, i.e. executables in
``lib/<package>/``, the launch file and configs in ``share/hapo_bringup/``, the ament index, and an installed
node executable that starts with ``--ros-args``.
"""

from __future__ import annotations

import configparser
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import NodeProcess, RosProbe, wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from hapo_bringup.cli import node_modules
from hapo_bringup.graph import DEPLOY_GRAPH
from hapo_interfaces import topics

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.parent.name for p in (ROOT / 'src').glob('*/package.xml'))
BIN = Path(sys.prefix) / 'bin'
HAPO = BIN / 'hapo'
# The tools that used to land on PATH (`info` shadowed GNU info); in a colcon install they are in lib/<package>/.
TOOLS = {'info', 'dataset', 'evaluate', 'optimize', 'import_stats'}

pytestmark = pytest.mark.skipif(sys.prefix == sys.base_prefix, reason='needs the virtual environment of setup.sh')


def _run_mux(command: list[str], node_name: str, domain: int, log_dir: Path) -> None:
    """Start mux_node through ``command ... --ros-args``, see its hold commands on ``domain``, SIGINT: exit 0."""
    mux = NodeProcess('hapo_teleop.mux_node', ['-r', f'__node:={node_name}'], {'lockstep': False}, log_dir=log_dir,
                      env={'ROS_DOMAIN_ID': str(domain)}, command=command)
    try:
        with RosProbe(domain) as probe:
            cmds = probe.collect(JointState, topics.CMD, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
            wait_for(lambda: len(cmds) > 0 or not mux.running(), 30, what=f'hold commands from {command}')
            assert mux.running(), mux.log()
        assert mux.stop() == 0, mux.log()
        assert f'[{node_name}]' in mux.log()
    finally:
        mux.stop()


def test_only_hapo_is_on_path():
    assert HAPO.is_file()
    nodes = set(node_modules())
    assert {'mux_node', 'policy_node', 'sim_node', 'recorder_node', 'joy_node'} <= nodes
    assert not sorted(name for name in TOOLS | nodes if (BIN / name).exists())
    ours = [ep.name for ep in importlib.metadata.entry_points(group='console_scripts')
            if (ep.dist.metadata['Name'] or '').replace('-', '_').startswith('hapo_')]
    assert ours == ['hapo']


def test_hapo_node_lists_the_nodes_and_refuses_an_unknown_one():
    listing = subprocess.run([HAPO, 'node', '--help'], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0
    for name, module in node_modules().items():
        assert name in listing.stdout and module in listing.stdout
    unknown = subprocess.run([HAPO, 'node', 'info'], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "no node 'info'" in unknown.stderr


def test_hapo_node_starts_a_node_with_ros_args_and_stops_on_sigint(ros_domain, tmp_path):
    _run_mux([str(HAPO), 'node', 'mux_node'], 'hapo_node_mux', ros_domain, tmp_path)


@pytest.fixture(scope='module')
def untracked_before() -> set[str]:
    return _untracked()


@pytest.fixture(scope='module', params=['install', 'symlink-install'])
def built(request, tmp_path_factory, untracked_before) -> Path:
    """The colcon base directory (build/, install/, log/ inside); nothing is written to the checkout."""
    base = tmp_path_factory.mktemp(request.param)
    cmd = [str(BIN / 'colcon'), '--log-base', str(base / 'log'), 'build', '--base-paths', str(ROOT / 'src'),
           '--build-base', str(base / 'build'), '--install-base', str(base / 'install')]
    if request.param == 'symlink-install':
        cmd.append('--symlink-install')
    done = subprocess.run(cmd, cwd=base, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f'colcon build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}'
    return base


def _untracked() -> set[str]:
    """Untracked and ignored paths of the checkout (not caches Python writes anyway)."""
    out = subprocess.run(['git', 'status', '--porcelain', '--ignored'], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return {line for line in out.splitlines() if '__pycache__' not in line}


def _entry_points(base: Path, package: str, group: str) -> set[str]:
    """Entry point names the package's setup.py declared under colcon (its egg-info in the build directory)."""
    parser = configparser.ConfigParser()
    parser.read((base / 'build' / package).glob('*.egg-info/entry_points.txt'))
    return set(parser[group]) if parser.has_section(group) else set()


@pytest.fixture(scope='module')
def prefixes(built) -> dict[str, Path]:
    """Each package's install prefix as ``ros2 run`` finds it: the ament index on install/setup.sh's path."""
    from ament_index_python.packages import get_package_prefix

    path = subprocess.run(['sh', '-c', '. "$0" && printf %s "$AMENT_PREFIX_PATH"', built / 'install/setup.sh'],
                          capture_output=True, text=True, check=True).stdout
    with pytest.MonkeyPatch.context() as env:
        env.setenv('AMENT_PREFIX_PATH', path)
        return {package: Path(get_package_prefix(package)) for package in PACKAGES}


@pytest.mark.slow
def test_every_package_is_indexed_with_its_executables_in_lib(built, prefixes):
    assert PACKAGES, 'no package.xml under src/'
    launched = {(n.package, n.executable) for n in DEPLOY_GRAPH}  # what deploy.launch.py asks launch_ros for
    for package, prefix in prefixes.items():
        assert prefix.is_relative_to(built / 'install'), (package, prefix)
        assert (prefix / 'share/ament_index/resource_index/packages' / package).is_file(), package
        assert (prefix / 'share' / package / 'package.xml').is_file(), package
        executables = _entry_points(built, package, 'console_scripts')
        needed = _entry_points(built, package, 'hapo.nodes') | {e for p, e in launched if p == package}
        assert needed <= executables, f'{package}: nodes without an executable: {sorted(needed - executables)}'
        for name in executables:
            exe = prefix / 'lib' / package / name
            assert exe.is_file() and os.access(exe, os.X_OK), f'{package}: {exe} missing or not executable'
        assert not (prefix / 'bin').exists(), f'{package}: executables belong in lib/{package}/, not on PATH'
    for package, name in [('hapo_trainer', 'optimize'), ('hapo_recorder', 'info'), ('hapo_bringup', 'hapo')]:
        assert (prefixes[package] / 'lib' / package / name).is_file(), f'ros2 run {package} {name}'


@pytest.mark.slow
def test_launch_file_and_configs_are_in_share(prefixes):
    share = prefixes['hapo_bringup'] / 'share/hapo_bringup'
    assert (share / 'launch/deploy.launch.py').is_file()
    files = lambda top: {p.relative_to(top) for p in top.rglob('*') if p.is_file()}  # noqa: E731
    assert files(ROOT / 'config') and files(share / 'config') == files(ROOT / 'config')


@pytest.mark.slow
def test_installed_node_executable_runs_with_ros_args_and_stops_on_sigint(built, prefixes, ros_domain, tmp_path):
    # As a user runs it: source the install's setup.sh, then the executable `ros2 run hapo_teleop mux_node` finds.
    command = ['sh', '-c', '. "$0" && exec "$@"', str(built / 'install/setup.sh'),
               str(prefixes['hapo_teleop'] / 'lib/hapo_teleop/mux_node')]
    _run_mux(command, 'installed_mux', ros_domain, tmp_path)


@pytest.mark.slow
def test_build_leaves_the_checkout_clean(built, untracked_before):
    assert _untracked() == untracked_before, 'colcon wrote into the checkout'
