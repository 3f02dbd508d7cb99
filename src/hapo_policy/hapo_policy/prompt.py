# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Instruction -> prompt text (one template, OpenVLA's) and the byte-level text tokenizer of the tiny VLA."""

from __future__ import annotations

PROMPT_TEMPLATE = 'In: What action should the robot take to {instruction}?\nOut:'


def prompt(instruction: str) -> str:
    """The OpenVLA prompt for ``instruction`` (trailing '.' and whitespace removed, lower-cased)."""
    return PROMPT_TEMPLATE.format(instruction=instruction.strip().rstrip('.').lower())


class ByteTokenizer:
    """UTF-8 bytes as ids 0..255, then PAD, BOS, EOS; nothing to download, nothing to save."""

    PAD = 256
    BOS = 257
    EOS = 258
    vocab_size = 259

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """BOS + the text's bytes; the *start* of the text is dropped beyond ``max_len`` ids (keeps 'Out:')."""
        ids = list(text.encode('utf-8'))
        if max_len is not None and len(ids) + 1 > max_len:
            ids = ids[len(ids) + 1 - max_len:]
        return [self.BOS, *ids]

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256).decode('utf-8', errors='replace')
