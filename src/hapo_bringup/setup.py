# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
import os

from setuptools import find_packages, setup

package_name = 'hapo_bringup'

def _tree(src, dst):
    # Install the top-level launch/ and config/ into share/hapo_bringup (colcon) when present.
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', src)
    out = []
    for d, _, files in os.walk(root):
        rel = os.path.relpath(d, root)
        out.append((os.path.normpath(os.path.join(dst, src, rel)), [os.path.join(d, f) for f in files]))
    return out


setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=_tree('launch', 'share/' + package_name) + _tree('config', 'share/' + package_name) + [
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
    entry_points={
        'console_scripts': [
            'hapo = hapo_bringup.cli:main',
        ],
    },
)
