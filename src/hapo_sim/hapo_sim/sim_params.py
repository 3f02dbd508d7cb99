# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Parameters of ``sim_node`` as one frozen schema (declared by ``hapo_ros.parameters.declare``); no ROS.

Importable without rclpy, so the bringup runner and docs can list them: ``params.describe(field)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hapo_interfaces.params import param
from hapo_sim.env import TASKS


@dataclass(frozen=True)
class SimParams:
    """sim_node parameters, all read once at start (read-only): name (type, default, unit): meaning."""

    task: str = param('lift', 'task to simulate', choices=(*TASKS, *TASKS.values()), read_only=True)
    scenario: str = param('', "scenario file (config/scenarios/*.yaml) whose scene variation to simulate; its task "
                              "must be task ('hapo deploy scenario:=FILE' sets both); '' = none", read_only=True)
    cameras: list[str] = param(['agentview'], 'cameras to render, e.g. robot0_eye_in_hand', read_only=True)
    image_size: int = param(128, 'square image side', unit='px', lo=8, hi=1024, read_only=True)
    seed: int = param(0, 'seed of episode 0; episode i uses seed + i', lo=0, hi=2**31 - 1, read_only=True)
    mode: str = param('lockstep', 'lockstep: one step per answered observation; realtime: timer',
                      choices=('lockstep', 'realtime'), read_only=True)
    control_rate_hz: float = param(20.0, 'control rate (sim time per step; timer rate in realtime)',
                                   unit='Hz', lo=1.0, hi=500.0, read_only=True)
    horizon: int = param(200, 'steps per episode before FAILURE (reason horizon)', lo=1, hi=10**6, read_only=True)
    instruction: str = param('', 'task instruction; empty = the task default (e.g. lift the cube)', read_only=True)
    demo: bool = param(False, 'episodes are expert demonstrations: START carries demo: true, so the recorder marks '
                              'the bags and the dataset labels every step c = 1 (hapo collect-demos)', read_only=True)
    auto_reset: bool = param(True, 'start the next episode after success/failure', read_only=True)
    max_episodes: int = param(0, 'stop (stay idle) after this many episodes; 0 = unlimited', lo=0, hi=10**9,
                              read_only=True)
    republish_s: float = param(1.0, 'lockstep: republish an unanswered observation (same stamp) after this '
                               'long, for subscribers that joined late; 0 = never', unit='s', lo=0.0, hi=60.0,
                               read_only=True)
    # [''] not []: hapo_ros.parameters.declare cannot declare an empty typed list with this rclpy;
    # '' entries are skipped
    wait_for: list = param([''], "nodes that must subscribe hapo/episode before the first episode starts, so none "
                                 "misses its START (the deploy graph: recorder_node, when recording)", read_only=True)
    wait_timeout_s: float = param(30.0, 'start anyway (with a warning) after waiting this long for wait_for',
                                  unit='s', lo=0.0, hi=3600.0, read_only=True)
