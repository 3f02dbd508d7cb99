# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
import os

from setuptools import find_packages, setup

package_name = 'hapo_sim'
# Executables: `ros2 run hapo_sim NAME` after colcon; nodes also `hapo node NAME`, tools `hapo <verb>`.
NODES = ['sim_node = hapo_sim.sim_node:main', 'expert_node = hapo_sim.expert_node:main',
         'operator_node = hapo_sim.operator_node:main']
TOOLS = []

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
    description='Simulated robot (robosuite on MuJoCo), scripted experts and a simulated operator.',
    license='Apache-2.0',
    # Console scripts only for colcon, which sets COLCON=1 for the setup.py it runs; setup.cfg puts them in
    # lib/hapo_sim. A pip install would put them on PATH: it gets only the node list that `hapo node` reads.
    entry_points={'hapo.nodes': NODES, 'console_scripts': NODES + TOOLS if os.environ.get('COLCON') else []},
)
