# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Bag-replay evaluation for a full ROS 2 install: policy_node, and ``hapo evaluate --live`` publishing the
recorded observations into it at their recorded pace and scoring its answers per label class.

    ros2 launch hapo_bringup replay.launch.py checkpoint:=/path/ckpt bags:=runs/episodes [out:=live.json]

Arguments: ``hapo_bringup.graph.REPLAY_ARGS``; resolved by ``graph.replay_graph`` as ``hapo deploy`` resolves
its graph. Without ROS 2 launch: ``hapo deploy robot:=none record:=false joy:=false checkpoint:=CKPT`` and
``hapo evaluate --live --policy CKPT --bags DIR`` in a second terminal.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch_ros.actions import Node

from hapo_bringup.graph import REPLAY_ARGS, replay_graph


def _actions(context):
    nodes, params, command = replay_graph(context.launch_configurations)
    replay = ExecuteProcess(cmd=command, output='screen')
    return [*(Node(package=n.package, executable=n.executable, name=n.name, parameters=[params[n.name]],
                   output='screen') for n in nodes),
            replay, RegisterEventHandler(OnProcessExit(target_action=replay, on_exit=[EmitEvent(event=Shutdown())]))]


def generate_launch_description():
    return LaunchDescription([*(DeclareLaunchArgument(name, default_value=default, description=doc)
                                for name, default, doc in REPLAY_ARGS),
                              OpaqueFunction(function=_actions)])
