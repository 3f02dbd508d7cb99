# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
from setuptools import find_packages, setup

package_name = 'hapo_ros'

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
    description=('The rclpy glue every HAPO node shares: run_node, parameter declaration from the plain schemas '
                 'of hapo_interfaces.params, DiagnosticArray building.'),
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
        ],
    },
)
