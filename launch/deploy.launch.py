# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Deploy graph for a full ROS 2 install (after ``colcon build``); ``hapo deploy`` starts the same nodes.

    ros2 launch hapo_bringup deploy.launch.py --show-args
    ros2 launch hapo_bringup deploy.launch.py robot:=servo camera:=0 checkpoint:=/path/ckpt gamepad:=ps4
    ros2 launch hapo_bringup deploy.launch.py scenario:=lift_far policy_node.checkpoint:=/path/ckpt

The declared arguments are ``hapo_bringup.graph.LAUNCH_ARGS``; every other ``key:=value`` is a parameter
override. ``graph.launch_graph`` resolves them exactly as ``hapo deploy`` does (one place), so both paths start
the same nodes with the same parameters.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import Node

from hapo_bringup.graph import LAUNCH_ARGS, launch_graph


def _nodes(context):
    nodes, params = launch_graph(context.launch_configurations)
    return [Node(package=n.package, executable=n.executable, name=n.name, parameters=[params[n.name]],
                 output='screen', emulate_tty=True) for n in nodes]


def generate_launch_description():
    return LaunchDescription([*(DeclareLaunchArgument(name, default_value=default, description=doc)
                                for name, default, doc in LAUNCH_ARGS),
                              OpaqueFunction(function=_nodes)])
