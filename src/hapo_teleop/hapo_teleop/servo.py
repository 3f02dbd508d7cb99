# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Executed 7-D commands -> what a real arm takes: a Cartesian twist for MoveIt Servo and a gripper position.

The action layout is ``topics.ACTION_DIMS`` (x, y, z, roll, pitch, yaw, gripper), each in [-1, 1], as the policy
and the joystick produce it and the sim executes it. Units: 1.0 on x/y/z is ``max_linear_m_s`` and 1.0 on
roll/pitch/yaw is ``max_angular_rad_s``, in the frame ``twist_frame``; values beyond [-1, 1] are clamped, so
those two parameters are hard limits. The gripper is binary as in the sim: > 0 closes (``gripper_closed``),
otherwise open (``gripper_open``). A hold or stopped command (``ControlSource.NONE`` / ``STOPPED``), a
non-finite value, a stale command and a shutdown all give a zero twist and leave the gripper where it is.

Episodes on a real arm come from the operator's buttons: the mux turns success / failure into the end events,
and the next button into an ABORT (reason ``next``) that ends the open episode, if any, and starts the next
(``Episodes``). Pure: the node (``servo_executor_node``) wires it to topics and a timer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.params import param
from hapo_interfaces.records import EpisodeMessage

ZERO = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
GRIPPER_MODES = ('trajectory', 'forward', 'none')


@dataclass(frozen=True)
class ServoParams:
    """Parameters of servo_executor (config/deploy.yaml, robot:=servo)."""

    twist_topic: str = param('/servo_node/delta_twist_cmds', 'geometry_msgs/TwistStamped input of MoveIt Servo')
    twist_frame: str = param('base_link', 'header.frame_id of the twist: the frame the action deltas are in (Servo '
                                          'transforms it to its planning frame)')
    max_linear_m_s: float = param(0.10, 'speed of an action of 1.0 on x/y/z; a hard limit', unit='m/s',
                                  lo=0.0, hi=1.0)
    max_angular_rad_s: float = param(0.5, 'rate of an action of 1.0 on roll/pitch/yaw; a hard limit', unit='rad/s',
                                     lo=0.0, hi=3.2)
    rate_hz: float = param(50.0, 'twists are published at this rate (Servo wants a steady stream)', unit='Hz',
                           lo=1.0, hi=1000.0)
    cmd_timeout_s: float = param(0.1, 'a command older than this is stale: zero twists until the next one (the '
                                      'mux sends one every tick, 50 Hz by default)', unit='s', lo=0.001, hi=5.0)
    gripper_mode: str = param('trajectory', 'trajectory (trajectory_msgs/JointTrajectory for a gripper or joint '
                                            'trajectory controller), forward (std_msgs/Float64MultiArray for a '
                                            'forward command controller) or none', choices=GRIPPER_MODES)
    gripper_topic: str = param('/gripper_controller/joint_trajectory', 'the gripper controller\'s command topic')
    gripper_joints: list[str] = param(['gripper_joint'], 'joint names of the gripper trajectory')
    gripper_open: float = param(0.0, 'gripper position for open (action gripper <= 0)')
    gripper_closed: float = param(0.8, 'gripper position for closed (action gripper > 0)')
    gripper_move_s: float = param(0.5, 'time_from_start of a gripper trajectory point', unit='s', lo=0.0, hi=10.0)
    joint_states_in: str = param('/joint_states', "the robot's joint states, republished as robot/joint_states "
                                                  '(the observation clock of the graph)')
    shadow: bool = param(False, 'shadow mode: the policy runs and the recorder records, the arm never moves '
                                '(nothing is sent to Servo or the gripper)')
    home_between_episodes: bool = param(False, 'move to the named home pose with moveit_py between episodes, when '
                                               'the operator presses next; skipped with a warning without moveit_py')
    home_pose: str = param('home', 'the SRDF named state of the home pose')
    planning_group: str = param('manipulator', 'the MoveIt planning group moved home')
    task: str = param('real', 'task name in the START event of each episode (and so in the bag metadata)')
    instruction: str = param('', 'instruction in the START event (the policy gets its own from hapo/instruction)')
    demo: bool = param(False, 'demo recording: every episode is marked a demo (c = 1 for every step): drive it '
                              'with the gamepad, the deadman held')


def _clamp(v: float) -> float:
    return max(-1.0, min(1.0, v))


@dataclass(frozen=True)
class ServoCommand:
    """What to send for one executed command: a twist (m/s, rad/s) and a gripper position (None: leave it)."""

    linear: tuple[float, float, float]
    angular: tuple[float, float, float]
    gripper: float | None = None


def to_servo(action: tuple[float, ...], source: ControlSource, p: ServoParams) -> ServoCommand:
    """One executed command as a twist and a gripper position; zero for a hold, a stop or a non-finite action."""
    if source not in (ControlSource.POLICY, ControlSource.HUMAN) or not all(math.isfinite(v) for v in action):
        return ServoCommand(ZERO[:3], ZERO[3:])
    a = [_clamp(v) for v in action]
    lin = tuple(v * p.max_linear_m_s for v in a[:3])
    ang = tuple(v * p.max_angular_rad_s for v in a[3:6])
    grip = p.gripper_closed if a[6] > 0 else p.gripper_open
    return ServoCommand(lin, ang, grip)  # type: ignore[arg-type]


class Watchdog:
    """The twist to publish at each tick: the last command's while it is fresh, zero once it is stale."""

    def __init__(self, timeout_ns: int):
        self.timeout_ns = timeout_ns
        self.last: ServoCommand | None = None
        self.last_ns: int | None = None
        self.gripper: float | None = None  # the position last sent

    def command(self, cmd: ServoCommand, now_ns: int) -> float | None:
        """Take a new command; the gripper position to send now (None: unchanged)."""
        self.last, self.last_ns = cmd, now_ns
        if cmd.gripper is None or cmd.gripper == self.gripper:
            return None
        self.gripper = cmd.gripper
        return cmd.gripper

    def twist(self, now_ns: int) -> tuple[tuple[float, float, float], tuple[float, float, float], bool]:
        """(linear, angular, stale) for this tick."""
        if self.last is None or self.last_ns is None or now_ns - self.last_ns > self.timeout_ns:
            return ZERO[:3], ZERO[3:], self.last is not None
        return self.last.linear, self.last.angular, False


ORIGIN = 'servo'


class Episodes:
    """START events on a real arm: one when the operator presses next (an ABORT with reason ``next``)."""

    def __init__(self, p: ServoParams):
        self.p, self.index, self.open = p, 0, False

    def on_event(self, msg: EpisodeMessage) -> bool:
        """Take an episode event of another node; True when the next episode should start now."""
        if msg.origin == ORIGIN:
            return False
        if msg.event.terminal:
            self.open = False
            return msg.event is EpisodeEvent.ABORT and msg.extra.get('reason') == 'next'
        return False

    def start(self, stamp_ns: int) -> EpisodeMessage:
        self.open, self.index = True, self.index + 1
        extra = {'task': self.p.task, 'instruction': self.p.instruction, 'episode': self.index}
        return EpisodeMessage(EpisodeEvent.START, stamp_ns, ORIGIN, {**extra, **({'demo': True} if self.p.demo
                                                                                  else {})})
