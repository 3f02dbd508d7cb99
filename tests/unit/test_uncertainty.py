# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The uncertainty flag (hysteresis, calibration) and hapo uncertainty's takeover precedence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hapo_bringup.uncertainty_report import calibration_peaks, chance, report, takeovers
from hapo_policy.uncertainty import UncertaintyFlag, calibrate, peaks
from hapo_recorder.bag_reader import Episode


def entropy_rows(values) -> np.ndarray:
    """One row per step whose peak (dim 3) is the value; the other dims lower."""
    rows = np.full((len(values), 7), 0.1)
    rows[:, 3] = values
    return rows


def episode(sources, step_peaks, outcome='failure') -> Episode:
    n = len(sources)
    stamps = np.arange(n, dtype=np.int64) * 50_000_000 + 10**18
    empty = np.zeros((0, 7), np.float32)
    return Episode(path=Path(f'ep_{outcome}_{n}'), metadata={}, truncated=False, task='lift', instruction='',
                   outcome=outcome, demo=False, k=10, policy_id='p', step_stamps_ns=stamps,
                   actions=np.zeros((n, 7), np.float32), sources=np.asarray(sources, np.int8),
                   labels=np.zeros(n, np.int8), labels_tagged=True, proposal_stamps_ns=np.zeros(0, np.int64),
                   proposals=empty, entropy_stamps_ns=stamps, entropies=entropy_rows(step_peaks).astype(np.float32),
                   images={}, image_stamps={}, joint_states={}, events=[])


def test_flag_rises_over_the_threshold_and_falls_below_it_minus_the_hysteresis():
    flag = UncertaintyFlag(threshold=2.0, hysteresis=0.5)
    got = flag.replay(entropy_rows([1.0, 2.0, 2.1, 1.8, 1.6, 1.4, 2.05, np.nan, 1.0]))
    assert got.tolist() == [False, False, True, True, True, False, True, True, False]


@pytest.mark.parametrize('threshold, hysteresis', [(0.0, 0.0), (np.nan, 0.1), (1.0, 1.0), (1.0, -0.1)])
def test_bad_flag_settings_are_refused(threshold, hysteresis):
    with pytest.raises(ValueError, match='uncertainty'):
        UncertaintyFlag(threshold, hysteresis)


def test_calibration_is_a_quantile_of_successful_policy_steps_only():
    ok = episode([1] * 10 + [2] * 5, list(range(1, 11)) + [50] * 5, outcome='success')
    failed = episode([1] * 5, [100] * 5)
    step_peaks = calibration_peaks([ok, failed])
    assert step_peaks.tolist() == list(range(1, 11))  # human steps and failed episodes are left out
    assert calibrate(step_peaks, 0.5) == pytest.approx(5.5)
    assert peaks(entropy_rows([3.0])).tolist() == [3.0]
    with pytest.raises(ValueError, match='no entropy'):
        calibrate(np.array([np.nan]))


def test_takeover_precedence_and_lead():
    # flag up at steps 4-6 (peaks 3), takeover at 8; a second takeover at 14 with no flag in the window
    sources = [1] * 8 + [2] * 3 + [1] * 3 + [2] * 2
    ep = episode(sources, [0, 0, 0, 0, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    flags = UncertaintyFlag(2.0, 0.5).replay(step_entropies_of(ep))
    rows = takeovers(ep, flags, window=5)
    assert [(r['step'], r['preceded'], r['lead_steps']) for r in rows] == [(8, True, 4), (14, False, None)]
    r = report([], [ep, episode([1] * 10, [3] * 2 + [0] * 8)], quantile=0.95, threshold=2.0, hysteresis=0.5,
               window=5)
    assert (r['takeovers'], r['preceded'], r['preceded_rate']) == (2, 1, 0.5)
    quiet = episode([1] * 10, [3] * 2 + [0] * 8)  # no takeover: 2 of its 6 five-step stretches hold a flag
    assert chance([(quiet, UncertaintyFlag(2.0, 0.5).replay(step_entropies_of(quiet)))], 5) == pytest.approx(2 / 6)
    assert r['chance_rate'] == pytest.approx(2 / 6, abs=1e-3)


def step_entropies_of(ep: Episode) -> np.ndarray:
    return ep.entropies.astype(np.float64)
