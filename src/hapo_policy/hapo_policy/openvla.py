# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Foreign checkpoints (OpenVLA-7B and other transformers VLAs), kept apart from the tiny model.

Loaded through ``AutoModelForVision2Seq`` (transformers 4) or ``AutoModelForImageTextToText`` (transformers 5)
in bf16 unless a dtype is given, with ``trust_remote_code`` only when the caller asks for it, safetensors only,
and wrapped in ``ForeignVla`` so the trainer calls it exactly like the tiny model::

    ForeignVla(**encode_batch(samples), action_tokens=(B, A)) -> (B, A, n_bins) teacher-forced logits

Token ids keep OpenVLA's convention (prismatic/vla/action_tokenizer.py): 256 *edges* ``linspace(-1, 1, 256)``,
``id = vocab_size - digitize(normalised)`` (decreasing ids, -1 -> vocab_size - 1, +1 -> vocab_size - 256) and
``decode`` with its off-by-one clip; ``vocab_size`` is the *tokenizer's* (OpenVLA: 32000, the embedding has 32064
rows), read from ``action_stats.json`` and checked against the tokenizer. ``prompt_suffix_ids`` (OpenVLA: the empty
token 29871 its ``predict_action`` appends after 'Out:') end every prompt, at inference and in training alike.
The action distribution is the softmax over those last ``n_bins`` ids
only, as for the tiny model; greedy decoding is restricted to them, so every predicted id is an action id.
Exercised on CPU by a tiny Llava stand-in (tests/foreign_vla.py); no real OpenVLA weights were run here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hapo_policy.errors import CheckpointError
from hapo_policy.normalization import ActionStats
from hapo_policy.tokenizer import ActionTokenizer

PROCESSOR_FILES = ('processor_config.json', 'preprocessor_config.json')  # either one (OpenVLA: preprocessor_)
TOKENIZER_FILE = 'tokenizer_config.json'


def load(path: Path, tokenizer: OpenVlaActionTokenizer, device: str = 'cpu', dtype: torch.dtype | None = None,
         trust_remote_code: bool = False) -> tuple[ForeignVla, Any]:
    """-> (model, processor), the foreign half of ``VlaPolicy.from_pretrained`` (``tiny.load`` is the other);
    raises CheckpointError with the reason in one line."""
    import transformers

    if not any((path / n).is_file() for n in PROCESSOR_FILES):
        raise CheckpointError(path, f'missing {PROCESSOR_FILES[0]} (or {PROCESSOR_FILES[1]}): a foreign checkpoint '
                                    'needs its processor')
    if not (path / TOKENIZER_FILE).is_file():
        raise CheckpointError(path, f'missing {TOKENIZER_FILE}: a foreign checkpoint needs its tokenizer')
    auto = getattr(transformers, 'AutoModelForVision2Seq', None) or getattr(
        transformers, 'AutoModelForImageTextToText', None)
    if auto is None:
        raise CheckpointError(path, 'this transformers has no AutoModelForVision2Seq/AutoModelForImageTextToText')
    try:
        processor = transformers.AutoProcessor.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = auto.from_pretrained(path, dtype=dtype or torch.bfloat16, use_safetensors=True,
                                     trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError, ImportError) as exc:
        hint = '' if trust_remote_code else ' (custom code needs trust_remote_code=True)'
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(path, f'cannot load foreign model: {first}{hint}') from None
    if getattr(processor, 'image_processor', None) is None:
        raise CheckpointError(path, f'the processor loaded as {type(processor).__name__}, which takes no images')
    vocab_size, rows = tokenizer.vocab_size, model.get_output_embeddings().weight.shape[0]
    if vocab_size > rows:
        raise CheckpointError(path, f'action_stats.json vocab_size {vocab_size} exceeds the model\'s {rows} logits')
    text_tokenizer = getattr(processor, 'tokenizer', None)
    own = getattr(text_tokenizer, 'vocab_size', None)
    if isinstance(own, int) and own != vocab_size:
        raise CheckpointError(path, f'action_stats.json vocab_size {vocab_size} differs from the tokenizer\'s {own}: '
                                    f'the action bins are the tokenizer\'s last {tokenizer.n_bins} ids, not the '
                                    'padded embedding\'s')
    pad_id = getattr(text_tokenizer, 'pad_token_id', None) or 0
    vla = ForeignVla(model, vocab_size, tokenizer.n_bins, pad_id, tokenizer.prompt_suffix_ids)
    return vla.to(device).eval(), processor


# token ids <-> actions (OpenVLA's convention) ---------------------------------------------------------------
def _edges(n_bins: int) -> np.ndarray:
    return np.linspace(-1.0, 1.0, n_bins)  # n_bins edges -> n_bins - 1 intervals (OpenVLA's)


def decode(token_ids: np.ndarray, vocab_size: int, stats: ActionStats, n_bins: int = 256) -> np.ndarray:
    """OpenVLA's own decoding (prismatic ActionTokenizer.decode_token_ids_to_actions), kept as it is."""
    bins = _edges(n_bins)
    centres = (bins[:-1] + bins[1:]) / 2.0
    idx = np.clip(vocab_size - np.asarray(token_ids) - 1, 0, centres.shape[0] - 1)
    return stats.unnormalize(centres[idx])


def encode(actions: np.ndarray, vocab_size: int, stats: ActionStats, n_bins: int = 256) -> np.ndarray:
    """Inverse of ``decode`` (OpenVLA's ActionTokenizer.__call__ after q01/q99 normalisation): (..., A) raw
    actions -> (..., A) int64 ids in [vocab_size - n_bins, vocab_size); round trip within half a bin."""
    digitized = np.digitize(stats.normalize(actions), _edges(n_bins))  # normalised is in [-1, 1] -> 1..n_bins
    return (vocab_size - np.clip(digitized, 1, n_bins)).astype(np.int64)


class OpenVlaActionTokenizer(ActionTokenizer):
    """``ActionTokenizer``'s interface (what the trainer uses) with OpenVLA's ids; ``first_id`` is still the
    lowest action id, so log-probs index the same ``n_bins`` slice of the logits."""

    def __init__(self, vocab_size: int, n_bins: int = 256, stats: ActionStats | None = None,
                 prompt_suffix_ids: tuple[int, ...] = ()):
        super().__init__(vocab_size, n_bins, stats)
        self.prompt_suffix_ids = tuple(prompt_suffix_ids)

    def spec(self) -> dict:
        spec = {'kind': 'openvla', 'n_bins': self.n_bins, 'vocab_size': self.vocab_size}
        if self.prompt_suffix_ids:
            spec['prompt_suffix_ids'] = list(self.prompt_suffix_ids)
        return spec

    def bins(self, actions: np.ndarray) -> np.ndarray:
        return self.encode(actions) - self.first_id

    def encode(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape[-1:] != (self.action_dim,):
            raise ValueError(f'actions must end in {self.action_dim} dims, got shape {actions.shape}')
        return encode(actions, self.vocab_size, self.stats, self.n_bins)

    def decode(self, token_ids: np.ndarray) -> np.ndarray:
        return decode(token_ids, self.vocab_size, self.stats, self.n_bins)

    def encode_torch(self, actions: torch.Tensor) -> torch.Tensor:
        norm = self.stats.normalize_torch(actions)  # (..., A) in [-1, 1]
        edges = torch.as_tensor(_edges(self.n_bins), dtype=torch.float64, device=actions.device)
        digitized = torch.bucketize(norm, edges, right=True).clamp(1, self.n_bins)  # == np.digitize
        return self.vocab_size - digitized

    def decode_torch(self, token_ids: torch.Tensor, check: bool = True) -> torch.Tensor:
        ids = token_ids.long()
        if check and bool(((ids < self.first_id) | (ids >= self.vocab_size)).any()):
            raise ValueError(f'token ids outside the action range [{self.first_id}, {self.vocab_size})')
        edges = _edges(self.n_bins)
        centres = torch.as_tensor((edges[:-1] + edges[1:]) / 2.0, dtype=torch.float32, device=ids.device)
        idx = (self.vocab_size - ids - 1).clamp(0, self.n_bins - 2)
        return self.stats.unnormalize_torch(centres[idx])


# the model ---------------------------------------------------------------------------------------------
def prompt_text(processor: Any, text: str) -> str:
    """Processors that mark the image's place in the text (Llava's '<image>') get the marker in front;
    OpenVLA's PrismaticProcessor declares none and gets the prompt unchanged."""
    marker = getattr(processor, 'image_token', None)
    return text if not isinstance(marker, str) or marker in text else f'{marker}{text}'


class _ActionIdsOnly:
    """Logits processor: greedy decoding may pick only the action ids [lo, hi)."""

    def __init__(self, lo: int, hi: int):
        self.lo, self.hi = lo, hi

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(scores, float('-inf'))
        out[:, self.lo:self.hi] = scores[:, self.lo:self.hi]
        return out


class ForeignVla(nn.Module):
    """A transformers image-text-to-text model seen through the tiny model's training interface."""

    base_model_prefix = 'vlm'  # peft (through transformers' weight-conversion mapping) asks any model with a config

    def __init__(self, vlm: nn.Module, vocab_size: int, n_bins: int = 256, pad_id: int = 0,
                 prompt_suffix_ids: tuple[int, ...] = ()):
        super().__init__()
        self.vlm = vlm
        self.vocab_size, self.n_bins, self.pad_id = int(vocab_size), int(n_bins), int(pad_id)
        self.suffix = torch.tensor(prompt_suffix_ids, dtype=torch.long)  # (S,)

    @property
    def config(self) -> Any:
        return self.vlm.config

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save_pretrained(self, path: Path | str, **kwargs) -> None:
        self.vlm.save_pretrained(path, **kwargs)

    def encode(self, processor: Any, samples: list[tuple[np.ndarray, str]]) -> dict[str, torch.Tensor]:
        """(image (H, W, 3) uint8, prompt) per sample -> processor outputs batched, ``input_ids`` right-padded,
        and ``prompt_len`` (B,) the real length of each row."""
        from PIL import Image

        rows = [processor(text=prompt_text(processor, text), images=Image.fromarray(img), return_tensors='pt')
                for img, text in samples]
        prompts = [self._with_suffix(r['input_ids'][0]) for r in rows]  # (L_i,) each
        lengths = [int(p.shape[0]) for p in prompts]
        ids = torch.full((len(rows), max(lengths)), self.pad_id, dtype=torch.long)  # (B, L)
        mask = torch.zeros_like(ids)  # (B, L)
        for i, (p, n) in enumerate(zip(prompts, lengths, strict=True)):
            ids[i, :n] = p
            mask[i, :n] = 1
        batch = {'input_ids': ids.to(self.device), 'attention_mask': mask.to(self.device),
                 'prompt_len': torch.tensor(lengths, device=self.device)}
        for key in rows[0]:
            if key not in batch and isinstance(rows[0][key], torch.Tensor):
                value = torch.cat([r[key] for r in rows])  # (B, ...)
                batch[key] = value.to(self.device, self.dtype if value.is_floating_point() else None)
        return batch

    def _with_suffix(self, ids: torch.Tensor) -> torch.Tensor:
        """(L,) prompt ids ending in ``prompt_suffix_ids`` (appended unless already there, as OpenVLA does)."""
        n = self.suffix.shape[0]
        if n == 0 or (ids.shape[0] >= n and torch.equal(ids[-n:], self.suffix)):
            return ids
        return torch.cat([ids, self.suffix])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: torch.Tensor,
                action_tokens: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """Teacher forcing: (B, A) action ids -> (B, A, n_bins) logits predicting each of them.

        Each row is [prompt, a_1 .. a_{A-1}, right padding]; right padding keeps every real token at its
        unpadded position for any model (no position_ids needed). Models that insert image embeddings into the
        sequence (Prismatic) return more logits than ids: the extra count is the same for every row."""
        b, a = action_tokens.shape
        seq = int(prompt_len.max()) + a - 1
        ids = torch.full((b, seq), self.pad_id, dtype=torch.long, device=input_ids.device)  # (B, L + A - 1)
        mask = torch.zeros_like(ids)  # (B, L + A - 1)
        cols = prompt_len[:, None] + torch.arange(a - 1, device=ids.device)  # (B, A - 1)
        width = input_ids.shape[1]
        ids[:, :width] = input_ids
        mask[:, :width] = attention_mask
        ids.scatter_(1, cols, action_tokens[:, :-1])
        mask.scatter_(1, cols, 1)
        logits = self.vlm(input_ids=ids, attention_mask=mask, use_cache=False, **inputs).logits  # (B, L', V')
        extra = logits.shape[1] - seq
        at = extra + prompt_len[:, None] - 1 + torch.arange(a, device=ids.device)  # (B, A)
        picked = logits.gather(1, at[..., None].expand(-1, -1, logits.shape[-1]))  # (B, A, V')
        return picked[..., self.vocab_size - self.n_bins:self.vocab_size]  # (B, A, n_bins)

    @torch.inference_mode()
    def generate_actions(self, batch: dict[str, torch.Tensor], action_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding over the action ids, one row at a time without its padding (``generate`` needs
        unpadded or left-padded prompts) -> ids (B, A), entropies (B, A) nats."""
        from transformers import LogitsProcessorList

        lo = self.vocab_size - self.n_bins
        only_actions = LogitsProcessorList([_ActionIdsOnly(lo, self.vocab_size)])
        tokens, entropies = [], []
        for row, n in enumerate(batch['prompt_len'].tolist()):
            inputs = {k: v[row:row + 1] for k, v in batch.items() if k != 'prompt_len'}
            inputs['input_ids'], inputs['attention_mask'] = inputs['input_ids'][:, :n], inputs['attention_mask'][:, :n]
            out = self.vlm.generate(**inputs, max_new_tokens=action_dim, do_sample=False, output_scores=True,
                                    return_dict_in_generate=True, logits_processor=only_actions)
            tokens.append(out.sequences[0, -action_dim:])  # (A,)
            scores = torch.stack(out.scores, dim=1)[0, :, lo:self.vocab_size].float()  # (A, n_bins)
            logp = torch.log_softmax(scores, dim=-1)
            entropies.append(-(logp.exp() * logp).sum(-1))  # (A,)
        return torch.stack(tokens), torch.stack(entropies)  # (B, A), (B, A)
