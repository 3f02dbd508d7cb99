# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""A tiny foreign (non hapo_tiny_vla) checkpoint: a transformers Llava VLA built from configs, no downloads.

Stands in for OpenVLA-7B on the ``VlaPolicy.from_pretrained`` foreign path: a SigLIP vision tower (32 px,
16 patches) + a 2-layer Llama, saved as safetensors with a ``LlavaProcessor`` (byte-level BPE tokenizer built in
code, no merges, so any text tokenises) and the ``action_stats.json`` VlaPolicy needs. Vocabulary (OpenVLA
convention: the action bins are the LAST ``N_BINS`` ids of the *tokenizer*)::

    0..3 specials, 4 '<image>', 5..260 the 256 byte symbols, 261..343 padding words, 344..599 action bins

and the model's embedding is padded to 640 rows, as OpenVLA pads 32000 to 32064: the stats' vocab_size (600),
not the logits' width, locates the bins. Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

CAMERA = 'agentview'
IMAGE_SIZE = 32
PATCH = 8
N_BINS = 256
VOCAB = 600  # tokenizer vocabulary; the action bins are ids 344..599
MODEL_VOCAB = 640  # embedding rows (padded, as OpenVLA's 32064 for a 32000 tokenizer)
SPECIALS = ['<unk>', '<s>', '</s>', '<pad>', '<image>']


def build_processor():
    """LlavaProcessor = SiglipImageProcessor + a byte-level BPE tokenizer (no merges) wrapped as a fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import LlavaProcessor, PreTrainedTokenizerFast, SiglipImageProcessor

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in sorted(ByteLevel.alphabet(), key=lambda c: ord(c)):
        vocab[ch] = len(vocab)
    while len(vocab) < VOCAB - N_BINS:
        vocab[f'<extra_{len(vocab)}>'] = len(vocab)
    for b in range(N_BINS):
        vocab[f'<act_{b}>'] = len(vocab)
    assert len(vocab) == VOCAB
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token='<unk>'))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token='<unk>', bos_token='<s>', eos_token='</s>',
                                        pad_token='<pad>', extra_special_tokens={'image_token': '<image>'})
    tokenizer.add_special_tokens({'additional_special_tokens': ['<image>']})
    tokenizer.padding_side = 'left'
    image_processor = SiglipImageProcessor(size={'height': IMAGE_SIZE, 'width': IMAGE_SIZE})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                          vision_feature_select_strategy='full', image_token='<image>')


def build_model(seed: int = 0):
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, SiglipVisionConfig

    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=IMAGE_SIZE, patch_size=PATCH)
    text = LlamaConfig(vocab_size=MODEL_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
                       pad_token_id=3, bos_token_id=1, eos_token_id=2)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=SPECIALS.index('<image>'),
                         vision_feature_select_strategy='full', vision_feature_layer=-1,
                         projector_hidden_act='gelu', tie_word_embeddings=False)
    config.camera_names = [CAMERA]  # VlaPolicy.camera_names reads it (one camera for a foreign model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlavaForConditionalGeneration(config)


def write_foreign_checkpoint(path: Path, stats=None, seed: int = 0) -> Path:
    """Save the tiny Llava VLA + processor + action_stats.json to ``path``; ``stats``: an ActionStats or None."""
    from hapo_policy.normalization import ActionStats

    stats = stats or ActionStats(-np.linspace(1.0, 2.0, 7), np.linspace(0.5, 3.0, 7))
    path = Path(path)
    build_model(seed).save_pretrained(path, safe_serialization=True)
    build_processor().save_pretrained(path)
    body = {**stats.to_json(), 'tokenizer': {'kind': 'openvla', 'n_bins': N_BINS, 'vocab_size': VOCAB}}
    (path / 'action_stats.json').write_text(json.dumps(body, indent=2) + '\n')
    return path


def as_openvla(path: Path, datasets: dict) -> Path:
    """The stand-in laid out like an OpenVLA checkpoint: norm_stats, n_action_bins and the embedding padding
    in config.json (MODEL_VOCAB rows - 40 = the tokenizer's 600), and no action_stats.json."""
    (path / 'action_stats.json').unlink()
    config = json.loads((path / 'config.json').read_text())
    config.update(norm_stats={k: {'action': v, 'num_transitions': 100} for k, v in datasets.items()},
                  n_action_bins=N_BINS, pad_to_multiple_of=MODEL_VOCAB - VOCAB)
    (path / 'config.json').write_text(json.dumps(config))
    return path
