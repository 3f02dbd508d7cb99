# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""sensor_msgs/Image <-> numpy (H, W, 3) uint8 in a few lines; no cv_bridge (DESIGN: none works here)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hapo_interfaces.stamps import fill

SUPPORTED_ENCODINGS = ('rgb8', 'bgr8', 'mono8')


class ImageError(ValueError):
    """An Image message this workspace cannot use; the text names the field."""


def to_array(msg: Any) -> np.ndarray:
    """Decode an Image to (H, W, 3) uint8 RGB; raises ImageError on an unsupported message."""
    enc = str(msg.encoding).lower()
    if enc not in SUPPORTED_ENCODINGS:
        raise ImageError(f'encoding {msg.encoding!r} unsupported (use one of {SUPPORTED_ENCODINGS})')
    channels = 1 if enc == 'mono8' else 3
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if step < w * channels or len(msg.data) < h * step:
        raise ImageError(f'data/step inconsistent: {len(msg.data)} bytes, step {step}, {w}x{h}')
    buf = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data,
                        dtype=np.uint8, count=h * step)
    img = buf.reshape(h, step)[:, : w * channels].reshape(h, w, channels)  # (H, W, C)
    if enc == 'bgr8':
        img = img[..., ::-1]
    elif enc == 'mono8':
        img = np.repeat(img, 3, axis=2)
    return np.ascontiguousarray(img)


def fill_image(msg: Any, img: np.ndarray, stamp_ns: int, frame_id: str = '') -> Any:
    """Fill an Image with an (H, W, 3) uint8 RGB array as rgb8."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ImageError(f'expected (H, W, 3) uint8, got {img.shape} {img.dtype}')
    fill(msg.header.stamp, stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(img.shape[0]), int(img.shape[1])
    msg.encoding = 'rgb8'
    msg.is_bigendian = 0
    msg.step = int(img.shape[1]) * 3
    msg.data = np.ascontiguousarray(img).tobytes()
    return msg
