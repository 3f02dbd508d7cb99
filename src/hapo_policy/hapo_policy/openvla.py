# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Foreign checkpoints (OpenVLA-7B and other transformers VLAs), kept apart from the tiny model.

Untested here: no such weights can be downloaded on these machines. Loaded in bf16 through
``AutoModelForVision2Seq`` (transformers 4) or ``AutoModelForImageTextToText`` (transformers 5), with
``trust_remote_code`` only when the caller asks for it, and safetensors only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hapo_policy.errors import CheckpointError
from hapo_policy.normalization import ActionStats


def load(path: Path, device: str, dtype: torch.dtype | None, trust_remote_code: bool):
    """-> (model, processor); raises CheckpointError with the reason in one line."""
    import transformers

    auto = getattr(transformers, 'AutoModelForVision2Seq', None) or getattr(
        transformers, 'AutoModelForImageTextToText', None)
    if auto is None:
        raise CheckpointError(path, 'this transformers has no AutoModelForVision2Seq/AutoModelForImageTextToText')
    try:
        processor = transformers.AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = auto.from_pretrained(path, dtype=dtype or torch.bfloat16, use_safetensors=True,
                                     trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        hint = '' if trust_remote_code else ' (custom code needs trust_remote_code=True)'
        raise CheckpointError(path, f'cannot load foreign model: {str(exc).splitlines()[0]}{hint}') from None
    return model.to(device).eval(), processor


def decode(token_ids: np.ndarray, vocab_size: int, stats: ActionStats, n_bins: int = 256) -> np.ndarray:
    """OpenVLA's own decoding (prismatic ActionTokenizer.decode_token_ids_to_actions), kept as it is."""
    bins = np.linspace(-1.0, 1.0, n_bins)  # 256 edges -> 255 centres
    centres = (bins[:-1] + bins[1:]) / 2.0
    idx = np.clip(vocab_size - np.asarray(token_ids) - 1, 0, centres.shape[0] - 1)
    return stats.unnormalize(centres[idx])


@torch.inference_mode()
def predict(model, processor, image: np.ndarray, prompt_text: str, vocab_size: int, n_bins: int = 256):
    """Greedy 7 tokens -> (token ids (A,), entropies (A,) over the last ``n_bins`` ids)."""
    from PIL import Image

    inputs = processor(prompt_text, Image.fromarray(image)).to(model.device, dtype=model.dtype)
    out = model.generate(**inputs, max_new_tokens=7, do_sample=False, output_scores=True,
                         return_dict_in_generate=True)
    tokens = out.sequences[0, -7:].cpu().numpy()  # (A,)
    scores = torch.stack(out.scores, dim=1)[0, :, vocab_size - n_bins:vocab_size].float()  # (A, n_bins)
    logp = torch.log_softmax(scores, dim=-1)
    return tokens, (-(logp.exp() * logp).sum(-1)).cpu().numpy()
