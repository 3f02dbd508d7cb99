# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Frames from a camera: a device index (``0``), a video file (looped) or a stream URL, through OpenCV, as
(H, W, 3) uint8 RGB at a fixed size. A capture that fails or ends (an unplugged camera, a dropped stream) reads
``None`` and is reopened by the next ``read``, at most every ``reopen_period_s``; the caller decides what to say.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hapo_interfaces.params import param


@dataclass(frozen=True)
class CameraParams:
    """Parameters of camera_node (config/deploy.yaml)."""

    source: str = param('0', 'a device index (0 = /dev/video0), a video file (looped: for bench tests and '
                             'replays) or a stream URL (rtsp://, http://)')
    name: str = param('agentview', 'camera name: publishes camera/<name>/image_raw (the name the checkpoint '
                                   'lists under its cameras)')
    width: int = param(640, 'published width; frames of another size are resized', unit='px', lo=8, hi=8192)
    height: int = param(480, 'published height', unit='px', lo=8, hi=8192)
    fps: float = param(30.0, 'frame rate asked of a device and the pace of a file source', unit='Hz',
                       lo=0.1, hi=1000.0)
    frame_id: str = param('camera', 'header.frame_id of the images')
    reopen_period_s: float = param(1.0, 'retry a missing, unplugged or ended source this often', unit='s',
                                   lo=0.05, hi=60.0)


def parse_source(source: str) -> int | str:
    """A device index for digits, else the path or URL as given."""
    return int(source) if source.strip().isdigit() else source


class Capture:
    """One OpenCV capture of ``source`` delivering RGB frames of ``width`` x ``height``; buffer of one frame."""

    def __init__(self, source: str, width: int, height: int, fps: float, reopen_period_s: float = 1.0):
        self.source, self.size, self.fps = parse_source(source), (width, height), fps
        self.reopen_period_s = reopen_period_s
        self.is_file = isinstance(self.source, str) and Path(self.source).is_file()
        self.cap = None
        self.next_open = 0.0
        self.opened = False  # True once a frame came since the last open

    def open(self) -> bool:
        """Open the source (at most every reopen_period_s); True when it is open."""
        import cv2

        if self.cap is not None:
            return True
        now = time.monotonic()
        if now < self.next_open:
            return False
        self.next_open = now + self.reopen_period_s
        self.is_file = isinstance(self.source, str) and Path(self.source).is_file()
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            return False
        if not self.is_file:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not one from a queue of stale ones
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        self.cap, self.opened = cap, False
        return True

    def read(self) -> np.ndarray | None:
        """The next frame (a file starts over at its end), or None while the source is absent or lost."""
        import cv2

        if not self.open():
            return None
        ok, frame = self.cap.read()
        if not ok and self.is_file and self.opened:  # the end of a file that played: loop
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.cap.read()
        if not ok or frame is None or frame.ndim != 3:
            self.release()
            return None
        self.opened = True
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def release(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    def describe(self) -> str:
        return f'device {self.source}' if isinstance(self.source, int) else str(self.source)
