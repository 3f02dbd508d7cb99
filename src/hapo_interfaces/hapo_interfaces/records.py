# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""How an executed step and an episode event are packed into standard messages, and read back.

Executed step (``hapo/cmd``, sensor_msgs/JointState), one message per control step::

    header.stamp    = stamp of the observation the action answers
    header.frame_id = control source (``ControlSource.wire``: 'policy', 'human', 'none', 'stopped')
    name            = ACTION_DIMS
    position        = the executed 7-D action

Everything about the step is in one message, so a bag gives it back exactly, whatever the
arrival order of other topics. Episode event (``hapo/episode``, std_msgs/String): a JSON object
``{"event": "success", "stamp_ns": ..., "origin": "mux", ...extra}``.

The functions fill or read message objects duck-typed, so the same code serves rclpy messages
and the ``rosbags`` messages the trainer reads without ROS.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from hapo_interfaces.enums import ControlSource, EpisodeEvent
from hapo_interfaces.stamps import fill, to_ns
from hapo_interfaces.topics import ACTION_DIM, ACTION_DIMS

ACTION_LIMIT = 1.0
"""Every dimension of an action to execute is a controller input in [-ACTION_LIMIT, ACTION_LIMIT]."""


class RecordError(ValueError):
    """A message that does not follow the contract; the text names the field."""


@dataclass(frozen=True)
class ExecutedStep:
    """One executed control step."""

    stamp_ns: int
    action: tuple[float, ...]
    source: ControlSource


@dataclass(frozen=True)
class EpisodeMessage:
    """One episode event with its free-form extras (task, instruction, seed, demo, reason...)."""

    event: EpisodeEvent
    stamp_ns: int
    origin: str
    extra: dict[str, Any] = field(default_factory=dict)


def fill_action(msg: Any, stamp_ns: int, values: Any, frame_id: str = '') -> Any:
    """Fill a JointState with an action-layout vector (also used for entropies)."""
    fill(msg.header.stamp, stamp_ns)
    msg.header.frame_id = frame_id
    msg.name = list(ACTION_DIMS)
    msg.position = [float(v) for v in values]
    return msg


def read_action(msg: Any, limit: float | None = None) -> tuple[float, ...]:
    """The 7 values of an action-layout JointState; RecordError naming the field on a bad layout, a non-finite
    value or (``limit`` given: ``ACTION_LIMIT`` for an action to execute) a value beyond ``[-limit, limit]``."""
    position = tuple(float(v) for v in msg.position)
    if len(position) != ACTION_DIM:
        raise RecordError(f'position: {len(position)} values, expected {ACTION_DIM} {ACTION_DIMS}')
    names = tuple(msg.name)
    if names and names != ACTION_DIMS:
        raise RecordError(f'name: {names} differ from {ACTION_DIMS}')
    for i, (dim, v) in enumerate(zip(ACTION_DIMS, position, strict=True)):
        if not math.isfinite(v):
            raise RecordError(f'position[{i}] ({dim}) = {v}: not finite')
        if limit is not None and abs(v) > limit:
            raise RecordError(f'position[{i}] ({dim}) = {v}: outside [-{limit:g}, {limit:g}]')
    return position


def fill_step(msg: Any, step: ExecutedStep) -> Any:
    """Pack an executed step into a JointState."""
    return fill_action(msg, step.stamp_ns, step.action, step.source.wire)


def read_step(msg: Any) -> ExecutedStep:
    """Unpack an executed step; raises RecordError naming the bad field."""
    try:
        source = ControlSource.from_wire(msg.header.frame_id)
    except ValueError as exc:
        raise RecordError(f'header.frame_id: {exc}') from None
    return ExecutedStep(to_ns(msg.header.stamp), read_action(msg), source)


def encode_event(event: EpisodeMessage) -> str:
    """JSON text for std_msgs/String.data."""
    body = {'event': event.event.name.lower(), 'stamp_ns': int(event.stamp_ns), 'origin': event.origin}
    body.update(event.extra)
    return json.dumps(body, sort_keys=True)


def decode_event(text: str) -> EpisodeMessage:
    """Parse an episode event; raises RecordError naming the bad field."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f'episode event is not JSON: {exc}') from None
    if not isinstance(body, dict):
        raise RecordError('episode event must be a JSON object')
    name = body.pop('event', None)
    if str(name).upper() not in EpisodeEvent.__members__:
        raise RecordError(f"episode event field 'event': {name!r} is not one of "
                          f'{[e.name.lower() for e in EpisodeEvent]}')
    event = EpisodeEvent[str(name).upper()]
    try:
        stamp_ns = int(body.pop('stamp_ns'))
        origin = str(body.pop('origin', ''))
    except KeyError as exc:
        raise RecordError(f'episode event field {exc} missing') from None
    except (TypeError, ValueError) as exc:
        raise RecordError(f'episode event field invalid: {exc}') from None
    return EpisodeMessage(event, stamp_ns, origin, body)
