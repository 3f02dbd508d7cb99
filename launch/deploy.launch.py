# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Deploy graph for a full ROS 2 install (after ``colcon build``); ``hapo deploy`` starts the same nodes.

    ros2 launch hapo_bringup deploy.launch.py [config:=/path/deploy.yaml] [gamepad:=ps4] [sim:=false] \
        [record:=false] [joy:=false] [scenario:=lift_far] [task:=pick_place_can] [policy_node.checkpoint:=/path/ckpt]

Every other ``key:=value`` is a parameter override, resolved by hapo_bringup.graph exactly as the
``hapo`` runner does, so both paths start the same nodes with the same parameters.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from hapo_bringup.graph import config_dir, gamepad_config, resolve


def _nodes(context):
    config = LaunchConfiguration('config').perform(context)
    settings = dict(context.launch_configurations)
    gamepad = settings.pop('gamepad', '')
    overrides = [f'{k}:={v}' for k, v in settings.items() if k != 'config']
    nodes, params = resolve(config, overrides, extra_configs=[gamepad_config(gamepad)] if gamepad else [])
    return [Node(package=n.package, executable=n.executable, name=n.name, parameters=[params[n.name]],
                 output='screen', emulate_tty=True) for n in nodes]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('config', default_value=str(config_dir() / 'deploy.yaml'),
                              description='ROS 2 parameter file keyed by node name'),
        OpaqueFunction(function=_nodes),
    ])
