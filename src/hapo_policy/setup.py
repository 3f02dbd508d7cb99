# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
from setuptools import find_packages, setup

package_name = 'hapo_policy'

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
    entry_points={
        'console_scripts': [
            'policy_node = hapo_policy.policy_node:main',
            'import_stats = hapo_policy.import_stats:main',
        ],
    },
)
