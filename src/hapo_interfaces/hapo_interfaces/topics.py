# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Default topic and service names (relative, so namespaces and remaps apply) and action layout."""

from __future__ import annotations

ACTION_DIMS: tuple[str, ...] = ('x', 'y', 'z', 'roll', 'pitch', 'yaw', 'gripper')
"""The 7-D end-effector delta; ``JointState.name`` of every action message lists these in order."""
ACTION_DIM = len(ACTION_DIMS)


def camera_topic(name: str) -> str:
    """Image topic of camera ``name`` (sensor_msgs/Image, rgb8)."""
    return f'camera/{name}/image_raw'


JOINT_STATES = 'robot/joint_states'  # sensor_msgs/JointState
OBJECT_STATE = 'robot/object_state'  # sensor_msgs/JointState, privileged sim state (experts, eval)
INSTRUCTION = 'hapo/instruction'  # std_msgs/String, transient local
POLICY_ACTION = 'hapo/policy/action'  # sensor_msgs/JointState, stamp = image stamp
POLICY_ENTROPY = 'hapo/policy/entropy'  # sensor_msgs/JointState, nats per action dim
POLICY_UNCERTAIN = 'hapo/policy/uncertain'  # std_msgs/Bool: max action-token entropy over the threshold (hysteresis)
POLICY_ID = 'hapo/policy/id'  # std_msgs/String, transient local: hash of the running weights (provenance)
JOY = 'joy'  # sensor_msgs/Joy
CMD = 'hapo/cmd'  # sensor_msgs/JointState: the executed-step record (see records.py), transient local
CMD_HISTORY = 100  # executed steps the mux keeps for a recorder that matches late (hapo_ros.qos.EXECUTED)
OPERATOR = 'hapo/operator'  # std_msgs/String, JSON: a simulated operator's takeovers and hand-backs, with reasons
EPISODE = 'hapo/episode'  # std_msgs/String, JSON episode events (see records.py)
EPISODE_LATEST = 'hapo/episode/latest'  # std_msgs/String, transient local: the newest START or end event (relayed)
DIAGNOSTICS = '/diagnostics'  # diagnostic_msgs/DiagnosticArray (absolute, as in ROS)
RESET_SERVICE = 'sim/reset'  # std_srvs/Trigger
