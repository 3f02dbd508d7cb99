# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
import os

from setuptools import find_packages, setup

package_name = 'hapo_bringup'
# Executables: `ros2 run hapo_bringup NAME` after colcon; nodes also `hapo node NAME` (hapo view runs view_node too).
NODES = ['view_node = hapo_bringup.view_node:main']


def _share(top):
    # Every file under top (launch/, config/: links to the checkout's, so colcon's paths stay inside the package)
    # to share/hapo_bringup/<same path>; relative to this directory, as colcon and setuptools require.
    return [(os.path.join('share', package_name, d), sorted(os.path.join(d, f) for f in files))
            for d, dirs, files in sorted(os.walk(top)) if files and '__pycache__' not in d]


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=_share('launch') + _share('config') + [
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    package_data={package_name: ['py.typed']},
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='HAPO workspace authors',
    maintainer_email='hapo@example.org',
    description='The HAPO node graph in one place: launch files, configs, the hapo CLI.',
    license='Apache-2.0',
    # The one command on PATH in a pip install; lib/hapo_bringup/hapo (`ros2 run hapo_bringup hapo`) after colcon.
    # Node console scripts only for colcon (COLCON=1), as in the other packages.
    entry_points={'hapo.nodes': NODES,
                  'console_scripts': ['hapo = hapo_bringup.cli:main'] + (NODES if os.environ.get('COLCON') else [])},
)
