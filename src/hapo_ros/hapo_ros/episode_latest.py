# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``hapo/episode/latest``: the newest START or end event of ``hapo/episode``, latched for late joiners.

``hapo/episode`` is volatile: a recorder restarted mid-episode (a crash, a supervisor's respawn) would hear no START
until the next episode and lose the one it came back in. The nodes that start episodes (sim_node, servo_executor)
relay every START and end event they hear, their own included, onto this transient-local topic; a recorder that
joins while an episode runs gets its START and resumes it in a continuation bag (hapo_recorder.recorder).
"""

from __future__ import annotations

from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from hapo_interfaces import topics
from hapo_interfaces.enums import EpisodeEvent
from hapo_interfaces.records import RecordError, decode_event
from hapo_ros.qos import LATCHED


def relay_latest_episode(node: Node) -> None:
    """Relay START and end events of ``hapo/episode`` onto ``hapo/episode/latest`` (never an older one)."""
    pub = node.create_publisher(String, topics.EPISODE_LATEST, LATCHED)
    newest = [-1]

    def on_event(msg: String) -> None:
        try:
            event = decode_event(msg.data)
        except RecordError:
            return  # the recorder and the sim warn about malformed events
        if (event.event is EpisodeEvent.START or event.event.terminal) and event.stamp_ns >= newest[0]:
            newest[0] = event.stamp_ns
            pub.publish(String(data=msg.data))

    node.create_subscription(String, topics.EPISODE, on_event, QoSProfile(depth=50,
                                                                       reliability=ReliabilityPolicy.RELIABLE))
