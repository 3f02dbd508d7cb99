# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
import os

from setuptools import find_packages, setup

package_name = 'hapo_policy'
# Executables: `ros2 run hapo_policy NAME` after colcon; nodes also `hapo node NAME`, tools `hapo <verb>`.
NODES = ['policy_node = hapo_policy.policy_node:main', 'camera_node = hapo_policy.camera_node:main']
TOOLS = ['import_stats = hapo_policy.import_stats:main']

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    package_data={package_name: ['py.typed']},
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='HAPO workspace authors',
    maintainer_email='hapo@example.org',
    description='VLA policy wrapper, OpenVLA-style action tokenizer, policy node.',
    license='Apache-2.0',
    # Console scripts only for colcon, which sets COLCON=1 for the setup.py it runs; setup.cfg puts them in
    # lib/hapo_policy. A pip install would put them on PATH: it gets only the node list that `hapo node` reads.
    entry_points={'hapo.nodes': NODES, 'console_scripts': NODES + TOOLS if os.environ.get('COLCON') else []},
)
