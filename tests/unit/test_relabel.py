# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""relabel(): exact labels per scenario (DESIGN.md 'The method': c = 1 / 2 / 0, K window rules)."""

from __future__ import annotations

import numpy as np
import pytest

from hapo_recorder.relabel import label_counts, relabel, undesirable_windows

P, H, N, S = 1, 2, 0, 3  # ControlSource POLICY, HUMAN, NONE, STOPPED


def seq(text: str) -> list[int]:
    """'PPPHH.' -> sources (P policy, H human, . none, S stopped)."""
    return [{'P': P, 'H': H, '.': N, 'S': S}[c] for c in text]


def lab(text: str) -> list[int]:
    """'0012-' -> labels (- is not a training step)."""
    return [-1 if c == '-' else int(c) for c in text]


@pytest.mark.parametrize(('sources', 'k', 'expected'), [
    # intervention at step 3 with K = 10: the window stops at the episode start (3 steps)
    ('PPPHHPPPP', 10, '000221111'),
    # no intervention
    ('PPPPP', 10, '11111'),
    # K = 2: only the two policy steps right before
    ('PPPPHH', 2, '110022'),
    # two interventions close together: the second window stops at the first one's end
    ('PPPPHHPPHHP', 10, '00002200221'),
    ('PPPPHHPPHHP', 1, '11102210221'),
    # interventions back to back through a NONE step: the second has an empty window
    ('PPHH.HHP', 10, '0022-221'),
    # NONE/STOPPED steps are skipped, not counted, and stay -1
    ('PP.P.HP', 2, '10-0-21'),
    ('PPS.H', 10, '00--2'),
    # K = 0: no relabelling
    ('PPHH', 0, '1122'),
    # the episode starts with a human takeover: empty window
    ('HHPP', 10, '2211'),
    # empty episode
    ('', 10, ''),
])
def test_relabel_table(sources, k, expected):
    out = relabel(seq(sources), k)
    assert out.dtype == np.int8
    assert out.tolist() == lab(expected)


@pytest.mark.parametrize(('sources', 'expected'), [
    ('PPPHHP', '111111'),  # a full demo: every executed step is desirable (1), no windows
    ('HHHHH', '11111'),
    ('P.SH', '1--1'),
])
def test_relabel_demo(sources, expected):
    assert relabel(seq(sources), 10, demo=True).tolist() == lab(expected)


def test_windows_listed_per_intervention():
    assert undesirable_windows(seq('PPPPHHPPHHP'), 10) == [[0, 1, 2, 3], [6, 7]]
    assert undesirable_windows(seq('PPPP'), 10) == []


def test_label_counts():
    assert label_counts(lab('0012-1')) == {'undesirable': 2, 'policy': 2, 'correction': 1, 'not_training': 1}


def test_bad_input():
    with pytest.raises(ValueError, match='k=-1'):
        relabel(seq('PH'), -1)
    with pytest.raises(ValueError, match='1-D'):
        relabel(np.zeros((2, 2)), 1)
