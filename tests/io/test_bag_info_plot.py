# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""``hapo bag-info --plot``: the timeline cells follow the recorded sources and labels; the PNG is written where
asked (or beside the bags), shows the K window, and an unwritable path is a one-line error."""

from __future__ import annotations

import numpy as np
from train.episode_bags import SOURCES, write_episode

from hapo_recorder.bag_reader import read_episode
from hapo_recorder.info import main
from hapo_recorder.info_plot import CELLS, timeline_codes


def test_timeline_cells_are_the_recorded_sources_with_the_k_window(tmp_path):
    ep = read_episode(write_episode(tmp_path, 1, k=4), decode_images=False)
    codes = timeline_codes(ep).tolist()
    first_human = SOURCES.index(2)
    assert codes[:first_human - 4] == [1] * (first_human - 4)  # policy steps outside the window
    assert codes[first_human - 4:first_human] == [5] * 4  # the K = 4 steps before the takeover: c = 0
    assert codes[first_human:first_human + 5] == [2] * 5 and codes.count(3) == SOURCES.count(0)


def test_plot_beside_the_bags_and_at_a_given_path(tmp_path, capsys):
    root = tmp_path / 'run'
    write_episode(root, 1, k=4)
    write_episode(root, 2, sources=[1] * 30, seed=1)  # no intervention: no K window
    assert main([str(root), '--plot']) == 0
    png = root / 'bag_info.png'
    assert f'plot: {png}' in capsys.readouterr().err
    import matplotlib.image

    pixels = (matplotlib.image.imread(png)[..., :3] * 255).round().astype(int)
    colours = {tuple(int(CELLS[c][0][i:i + 2], 16) for i in (1, 3, 5)) for c in (1, 2, 5)}
    found = {tuple(p) for p in np.unique(pixels.reshape(-1, 3), axis=0)}
    assert colours <= found, 'policy, human and K-window cells are all drawn'

    other = tmp_path / 'plots' / 'run.png'
    one_bag = sorted(p for p in root.iterdir() if p.is_dir())[0]
    assert main([str(one_bag), '--plot', str(other)]) == 0
    assert other.stat().st_size > 10_000

    (tmp_path / 'file').write_text('')
    assert main([str(root), '--plot', str(tmp_path / 'file' / 'x.png')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f'error: {tmp_path / "file" / "x.png"}: cannot write the plot')
