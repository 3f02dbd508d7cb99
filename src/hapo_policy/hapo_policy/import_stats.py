# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""OpenVLA's action statistics -> our ``action_stats.json``, so an OpenVLA checkpoint loads as it is downloaded.

OpenVLA keeps per-dataset statistics in ``config.json`` (``norm_stats``; 20+ datasets for openvla-7b) and its
fine-tuning script writes ``dataset_statistics.json`` beside the weights; which dataset's statistics apply is
OpenVLA's ``unnorm_key``. ``VlaPolicy.from_pretrained`` uses them directly when there is exactly one dataset;
otherwise ``hapo import-stats DIR --unnorm-key KEY`` writes ``action_stats.json`` into the checkpoint.

What is taken from the checkpoint, as OpenVLA's ``predict_action`` uses it:
q01/q99 and ``mask`` (unmasked dimensions, the gripper, are not normalised), ``n_action_bins``, the tokenizer's
vocabulary ``text_config.vocab_size - pad_to_multiple_of`` (32064 - 64 = 32000), and the empty token 29871
OpenVLA appends after 'Out:' (``prompt_suffix_ids``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hapo_policy.checkpoint import CONFIG_FILE, STATS_FILE, atomic_write_text, read_json
from hapo_policy.errors import CheckpointError
from hapo_policy.normalization import ActionStats

DATASET_STATS_FILE = 'dataset_statistics.json'
OPENVLA_PROMPT_SUFFIX = (29871,)  # LlamaTokenizer's empty '▁' token, present after 'Out:' at training time


def norm_stats(path: Path, config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{dataset: {'action': {'q01', 'q99', 'mask', ...}, ...}} from config.json and dataset_statistics.json
    (the file wins); {} when the checkpoint has none."""
    stats = dict(config.get('norm_stats') or {})
    if (path / DATASET_STATS_FILE).is_file():
        stats.update(read_json(path, DATASET_STATS_FILE))
    return stats


def stats_body(path: Path, config: dict[str, Any], unnorm_key: str | None = None) -> dict[str, Any] | None:
    """The ``action_stats.json`` body for dataset ``unnorm_key`` (None: the only one); None without norm_stats.
    Raises CheckpointError when the choice is ambiguous or the entry is invalid, naming the keys to pick from."""
    datasets = norm_stats(path, config)
    if not datasets:
        return None
    keys = sorted(datasets)
    if unnorm_key is None and len(keys) > 1:
        raise CheckpointError(path, f'norm_stats holds {len(keys)} datasets; pick the one this robot matches: '
                                    f'hapo import-stats {path} --unnorm-key KEY (keys: {", ".join(keys)})')
    key = keys[0] if unnorm_key is None else unnorm_key
    if key not in datasets:
        raise CheckpointError(path, f'no norm_stats for unnorm_key {key!r} (keys: {", ".join(keys)})')
    try:
        stats = ActionStats.from_json(datasets[key]['action'])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(path, f'norm_stats[{key!r}]["action"] invalid: {exc}') from None
    text = config.get('text_config') or {}
    if 'vocab_size' not in text:
        raise CheckpointError(path, 'config.json has no text_config.vocab_size to place the action bins; write '
                                    'action_stats.json by hand')
    vocab_size = int(text['vocab_size']) - int(config.get('pad_to_multiple_of') or 0)
    spec = {'kind': 'openvla', 'n_bins': int(config.get('n_action_bins', 256)), 'vocab_size': vocab_size}
    if config.get('model_type') == 'openvla':
        spec['prompt_suffix_ids'] = list(OPENVLA_PROMPT_SUFFIX)
    return {**stats.to_json(), 'tokenizer': spec, 'unnorm_key': key}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog='hapo import-stats',
        description="Write an OpenVLA checkpoint's action statistics for one dataset (its unnorm_key) as "
                    f'{STATS_FILE}, the file policy_node and the trainer read. Run once per checkpoint.')
    ap.add_argument('checkpoint', type=Path, help='OpenVLA-style checkpoint directory (config.json with norm_stats, '
                                                  f'or {DATASET_STATS_FILE})')
    ap.add_argument('--unnorm-key', default=None, help='dataset whose statistics apply (default: the only one)')
    ap.add_argument('--list', action='store_true', help='list the datasets with their action sizes and exit')
    ap.add_argument('--force', action='store_true', help=f'replace an existing {STATS_FILE}')
    args = ap.parse_args(argv)
    path = args.checkpoint
    try:
        if not (path / CONFIG_FILE).is_file():
            raise CheckpointError(path, f'missing {CONFIG_FILE}')
        config = read_json(path, CONFIG_FILE)
        if args.list:
            for key, entry in sorted(norm_stats(path, config).items()):
                print(f'{key}\t{len(entry.get("action", {}).get("q01", []))} action dims')
            return 0
        body = stats_body(path, config, args.unnorm_key)
        if body is None:
            raise CheckpointError(path, f'no norm_stats in {CONFIG_FILE} and no {DATASET_STATS_FILE}')
        if (path / STATS_FILE).exists() and not args.force:
            raise CheckpointError(path, f'{STATS_FILE} exists; --force replaces it')
        out = atomic_write_text(path / STATS_FILE, json.dumps(body, indent=2) + '\n')
    except (CheckpointError, OSError) as exc:
        print(f'hapo import-stats: {exc}', file=sys.stderr)
        return 2
    print(f'wrote {out} (unnorm_key {body["unnorm_key"]}, {len(body["q01"])} dims, vocab_size '
          f'{body["tokenizer"]["vocab_size"]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
