# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Teacher-forced log-probs of action ids: the one function ``VlaPolicy.action_logprobs`` and the trainer use.

It takes the module to call because training must go through a DDP wrapper's ``forward`` (its gradient hooks)
or a frozen reference copy, where ``VlaPolicy`` calls its own model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor


def action_logprobs(module: Callable[..., Tensor], first_id: int, batch: dict[str, Any], action_tokens: Tensor,
                    ) -> tuple[Tensor, Tensor]:
    """(B, A) log p of ``action_tokens`` and (B, A) argmax ids, both over the ``n_bins`` action ids only (the
    distribution greedy decoding reads); ``module(**batch, action_tokens=...)`` gives (B, A, n_bins) logits.
    Gradients flow."""
    logits = module(**batch, action_tokens=action_tokens)  # (B, A, n_bins)
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, A, n_bins)
    picked = logp.gather(-1, (action_tokens - first_id).unsqueeze(-1)).squeeze(-1)  # (B, A)
    return picked, logits.argmax(-1) + first_id  # (B, A), (B, A)
