# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Scores of a live bag replay (``replay_node``): the policy node's answers per label class, and whether they
equal what the same checkpoint computes offline on the same observation (no ROS).

A step pairs with the observation of its own stamp only (``stamps.match_stamp`` with no lag: the replay
publishes every observation with its recorded stamp, and the policy node answers with that stamp).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from hapo_interfaces.enums import TRAINING_LABELS, Label
from hapo_interfaces.stamps import match_stamp
from hapo_recorder.bag_reader import Episode
from hapo_recorder.relabel import relabel

MAX_OBS_LAG_NS = 0  # a step pairs with the observation of its own stamp only


class Row(NamedTuple):
    """One replayed training step."""

    label: int
    executed: np.ndarray  # (7,) the recorded action
    answer: tuple[tuple[float, ...], int] | None  # the live action and its receive ns; None if unanswered
    offline_tokens: np.ndarray  # (7,) the policy's greedy tokens on the same observation, computed here
    sent_ns: int  # when the observation was published


def _paired(stamps: list[int], by_stamp: dict[int, Any], stamp: int) -> Any | None:
    """The recorded observation (an image or a joint state; ``stamps`` = sorted keys of ``by_stamp``) that the
    step stamped ``stamp`` answered, or None."""
    j = match_stamp(stamps, stamp, MAX_OBS_LAG_NS)
    return None if j is None else by_stamp[stamps[j]]


def episode_rows(policy: Any, ep: Episode, k: int, sent: dict[int, int],
                 answers: dict[int, tuple[tuple[float, ...], int]]) -> list[Row]:
    """The rows of ``ep``'s training steps (relabelled with ``k``) whose observation was published (``sent``)."""
    labels = relabel(ep.sources, k, ep.demo)
    cam_stamps, js_stamps = {cam: sorted(f) for cam, f in ep.images.items()}, sorted(ep.joint_states)
    rows = []
    for i, (stamp, c) in enumerate(zip(ep.step_stamps_ns.tolist(), labels.tolist(), strict=True)):
        images = {cam: _paired(cam_stamps[cam], frames, stamp) for cam, frames in ep.images.items()}
        if c == Label.NOT_TRAINING or stamp not in sent or any(v is None for v in images.values()):
            continue
        proprio = _paired(js_stamps, ep.joint_states, stamp)
        offline = policy.predict({cam: images[cam] for cam in policy.camera_names}, ep.instruction,
                                 None if proprio is None else proprio[:policy.proprio_dim])
        rows.append(Row(c, ep.actions[i], answers.get(stamp), offline.tokens, sent[stamp]))
    return rows


def summarise(policy: Any, rows: list[Row], bad_answers: int) -> dict[str, Any]:
    """Per class (``Label`` display names): count, answered, action L1 and token accuracy of the live answers
    against the executed action, agreement with the offline tokens, stamp-to-answer latency."""
    out: dict[str, Any] = {'steps': len(rows), 'bad_answers': bad_answers, 'classes': {}}
    for label in TRAINING_LABELS:
        mine = [r for r in rows if r.label == label]
        answered = [r for r in mine if r.answer is not None]
        entry: dict[str, Any] = {'n': len(mine), 'answered': len(answered)}
        if answered:
            executed = np.array([r.executed for r in answered])  # (M, 7)
            live = np.array([r.answer[0] for r in answered])  # (M, 7)
            live_tokens = policy.tokenizer.encode(live)  # (M, 7)
            entry.update(action_l1=float(np.abs(live - executed).mean()),
                         token_accuracy=float((live_tokens == policy.tokenizer.encode(executed)).mean()),
                         agrees_with_offline=float(np.mean([(lt == r.offline_tokens).all() for lt, r in
                                                            zip(live_tokens, answered, strict=True)])),
                         latency_p50_ms=float(np.percentile([(r.answer[1] - r.sent_ns) / 1e6 for r in answered],
                                                            50)))
        out['classes'][label.display] = entry
    answered = sum(e['answered'] for e in out['classes'].values())
    out['answered_fraction'] = answered / len(rows) if rows else 0.0
    return out
