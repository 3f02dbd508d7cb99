# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Checkpoint files on disk: their names, reading them (CheckpointError), the policy id, and the atomic write.

A checkpoint is a ``VlaPolicy.save_pretrained`` directory::

    config.json          model config (model_type 'hapo_tiny_vla', or a foreign VLA such as OpenVLA)
    model.safetensors    weights (or shards + model.safetensors.index.json); never a pickle
    action_stats.json    {"q01": [...], "q99": [...], "mask"?: [...], "tokenizer": {"n_bins", "vocab_size", "kind"}}
                         (an OpenVLA checkpoint without it: taken from its norm_stats, see import_stats.py)
    run_config.json      optional: the resolved training config of the run that wrote it

The policy id is the first 16 hex digits of the sha256 of the weights files. ``atomic_dir`` and
``atomic_write_text`` are the one temp-then-rename write of the workspace (checkpoints, run checkpoints, dataset
caches, imported statistics): a reader never sees a half-written file or directory. Standard library only.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hapo_policy.errors import CheckpointError

CONFIG_FILE = 'config.json'
STATS_FILE = 'action_stats.json'
RUN_CONFIG_FILE = 'run_config.json'
WEIGHTS_FILE = 'model.safetensors'
WEIGHTS_INDEX = 'model.safetensors.index.json'
PICKLE_FILES = ('pytorch_model.bin', 'pytorch_model.bin.index.json', 'model.pt', 'model.pth', 'training_args.bin')
ID_DIGITS = 16


def is_checkpoint(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / STATS_FILE).is_file()


def weights_files(path: Path) -> list[Path]:
    """The safetensors weights of ``path`` (one file or the shards); refuses pickles with a CheckpointError."""
    if (path / WEIGHTS_FILE).is_file():
        return [path / WEIGHTS_FILE]
    if (path / WEIGHTS_INDEX).is_file():
        return sorted(path.glob('model-*.safetensors'))
    pickles = [n for n in PICKLE_FILES if (path / n).exists()]
    if pickles:
        raise CheckpointError(path, f'only pickle weights ({", ".join(pickles)}); refusing to unpickle, '
                                    'convert them to model.safetensors')
    raise CheckpointError(path, f'missing {WEIGHTS_FILE}')


def read_json(path: Path, name: str) -> dict[str, Any]:
    """``path/name`` as a JSON object; CheckpointError when unreadable or not an object."""
    try:
        body = json.loads((path / name).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f'{name} unreadable: {exc}') from None
    if not isinstance(body, dict):
        raise CheckpointError(path, f'{name} is not a JSON object')
    return body


def policy_id(weights: Sequence[Path]) -> str:
    """The id of a saved policy: sha256 over its weights files' bytes, in order."""
    h = hashlib.sha256()
    for f in weights:
        with f.open('rb') as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b''):  # noqa: B023 (fh bound per file)
                h.update(chunk)
    return h.hexdigest()[:ID_DIGITS]


def bytes_id(data: bytes) -> str:
    """The id of an unsaved policy: sha256 of its serialised weights."""
    return hashlib.sha256(data).hexdigest()[:ID_DIGITS]


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a new empty directory beside ``path`` to fill; when the block succeeds it becomes ``path`` by rename
    (an existing ``path`` is moved aside first and removed after), when it raises it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(path)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{path.name}.{os.getpid()}-', suffix='.partial', dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f'.{path.name}.old-{os.getpid()}')
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_stale_partials(path: Path) -> None:
    """Remove the ``.<name>.<pid>-*.partial`` directories that a writer killed mid-write left beside ``path``
    (its pid is gone); a live writer's partial is left alone."""
    for partial in path.parent.glob(f'.{glob.escape(path.name)}.*-*.partial'):
        pid = partial.name[len(path.name) + 2:].split('-', 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` as the file ``path`` (temp file beside it + ``os.replace``)."""
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.partial', dir=path.parent)
    try:
        with os.fdopen(fd, 'w') as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
