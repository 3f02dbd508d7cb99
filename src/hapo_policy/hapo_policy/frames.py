# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""What the inference thread takes: the newest complete camera set (LatestFrames; nothing stale is ever queued)
and the joint state of that set's observation (JointsByStamp).

Image callbacks ``put`` frames; the inference thread ``take``s the newest *ready set* (one frame per
camera). A ready set that is replaced before it was taken is counted in ``skipped``. Two rules make a set:

- ``match_stamps=True`` (sim, which stamps all cameras of a step identically): every camera has a frame
  with that same stamp; the set's stamp is it.
- ``match_stamps=False`` (real rig): the newest frame of each camera once all have one; the set's stamp
  is the *oldest* of them, so downstream staleness checks stay conservative.

A frame stamped more than ``CLOCK_JUMP_NS`` before the newest set offered means the camera's clock jumped back
(or came back from a jump ahead): the frames kept are dropped and it starts afresh (counted in ``clock_jumps``),
else one frame from a clock that jumped ahead would keep every later one out for good.

Joint states pair with a set by ``stamps.match_stamp`` with no lag (the sim stamps an observation's joint
state and images alike), waiting up to ``PROPRIO_WAIT_S`` for it; without one (or with ``match_stamps=False``)
the latest joint state is used, and a missed pairing is counted in ``unmatched``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hapo_interfaces.stamps import match_stamp

_KEEP = 4  # frames kept per camera while waiting for the other cameras' frame of the same stamp
_KEEP_JOINTS = 16  # joint states kept by stamp while their images are on the way
PROPRIO_WAIT_S = 0.05  # how long a frame set waits for the joint state of its own observation
CLOCK_JUMP_NS = 1_000_000_000  # a frame this much older than the newest set offered: the camera's clock jumped
PROPRIO_MAX_LAG_NS = 0  # exact stamp only; else the latest joint state (JointsByStamp.for_frame)


@dataclass(frozen=True)
class FrameSet:
    stamp_ns: int
    images: dict[str, np.ndarray]


class LatestFrames:
    """Thread-safe single-slot mailbox of camera sets; see the module docstring."""

    def __init__(self, cameras: Sequence[str], match_stamps: bool = True):
        self.cameras = list(cameras)
        self.match_stamps = match_stamps
        self.received = 0  # frames put
        self.skipped = 0  # ready sets replaced by a newer one before inference took them
        self.clock_jumps = 0  # frames that started afresh (module docstring)
        self._frames: dict[str, dict[int, np.ndarray]] = {c: {} for c in self.cameras}
        self._pending: FrameSet | None = None
        self._last_stamp = -1  # stamp of the newest set made ready; older sets are never offered again
        self._closed = False
        self._cond = threading.Condition()

    def put(self, camera: str, stamp_ns: int, image: np.ndarray) -> None:
        with self._cond:
            self.received += 1
            if stamp_ns < self._last_stamp - CLOCK_JUMP_NS:
                self.clock_jumps += 1
                self._frames = {c: {} for c in self.cameras}
                self._last_stamp = -1
            frames = self._frames[camera]
            frames[stamp_ns] = image
            for old in sorted(frames)[:-_KEEP]:
                del frames[old]
            ready = self._ready(stamp_ns)
            if ready is None or ready.stamp_ns < self._last_stamp:
                return
            if self._pending is not None:
                self.skipped += 1
            self._pending, self._last_stamp = ready, ready.stamp_ns
            self._cond.notify()

    def _ready(self, stamp_ns: int) -> FrameSet | None:
        if self.match_stamps:
            if all(stamp_ns in self._frames[c] for c in self.cameras):
                return FrameSet(stamp_ns, {c: self._frames[c][stamp_ns] for c in self.cameras})
            return None
        if not all(self._frames[c] for c in self.cameras):
            return None
        newest = {c: max(self._frames[c]) for c in self.cameras}
        return FrameSet(min(newest.values()), {c: self._frames[c][s] for c, s in newest.items()})

    def take(self, timeout_s: float) -> FrameSet | None:
        """The pending set (and clear it), or None after ``timeout_s`` or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending is not None or self._closed, timeout=timeout_s)
            ready, self._pending = self._pending, None
            return ready

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class JointsByStamp:
    """Thread-safe recent joint positions by stamp; see the module docstring for the pairing rule."""

    def __init__(self, match_stamps: bool = True):
        self.match_stamps = match_stamps
        self.latest: np.ndarray | None = None
        self.unmatched = 0  # frame sets that got the latest joint state instead of their own
        self._by_stamp: dict[int, np.ndarray] = {}
        self._cond = threading.Condition()

    def put(self, stamp_ns: int, positions: np.ndarray) -> None:
        with self._cond:
            self.latest = self._by_stamp[stamp_ns] = positions
            for old in sorted(self._by_stamp)[:-_KEEP_JOINTS]:
                del self._by_stamp[old]
            self._cond.notify_all()

    def _paired(self, stamp_ns: int) -> np.ndarray | None:
        stamps = sorted(self._by_stamp)
        j = match_stamp(stamps, stamp_ns, PROPRIO_MAX_LAG_NS)
        return None if j is None else self._by_stamp[stamps[j]]

    def for_frame(self, stamp_ns: int, wait_s: float = PROPRIO_WAIT_S) -> np.ndarray | None:
        """The joint state of the observation stamped ``stamp_ns`` (waiting up to ``wait_s``), else the latest
        (None before the first one)."""
        with self._cond:
            if not self.match_stamps:
                return self.latest
            self._cond.wait_for(lambda: self._paired(stamp_ns) is not None, timeout=wait_s)
            paired = self._paired(stamp_ns)
            if paired is not None:
                return paired
            self.unmatched += 1  # fallback (policy node only): the latest joint state, whatever its stamp
            return self.latest
