# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""recorder_node as a real process over DDS, fed by a real publisher process; bags read back with read_episode.

Labels are checked exactly against literal tables (and against relabel() recomputed from the recorded sources).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import wait_for

from hapo_recorder.bag_reader import join_continuation, list_episodes, read_episode
from hapo_recorder.relabel import relabel

pytestmark = pytest.mark.graph
PLAYER = str(Path(__file__).with_name('episode_player.py'))
NODE = 'hapo_recorder.recorder_node'


def lab(text: str) -> list[int]:
    return [-1 if c == '-' else int(c) for c in text]


def play(episodes: list[dict], diag_out: Path | None = None, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    args = [sys.executable, PLAYER, json.dumps(episodes)] + ([str(diag_out)] if diag_out else [])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, check=False,
                          env={**__import__('os').environ, 'PYTHONUNBUFFERED': '1'})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def by_task(root: Path) -> dict:
    return {read_episode(p, decode_images=False).task: p for p in list_episodes([root])}


SCENARIOS = [
    # (task, sources, demo, end, expected labels with K = 10)
    ('at3', 'PPPHHHPPPP', False, 'success', '0002221111'),  # intervention at step 3: window of 3
    ('close', 'PPPPPHHPPHHPP', False, 'failure', '0000022002211'),  # second window stops at the first one's end
    ('none', 'PPPPPP.P', False, 'success', '111111-1'),  # no intervention
    ('demo', 'HHHHHHHH', True, 'success', '11111111'),  # full expert demonstration
]


def test_scripted_episodes_exact_labels(start_node, tmp_path):
    root = tmp_path / 'episodes'
    rec = start_node(NODE, params={'output_root': str(root), 'k': 10, 'diagnostics_period_s': 0.2})
    play([{'task': t, 'sources': s, 'demo': d, 'end': e} for t, s, d, e, _ in SCENARIOS], tmp_path / 'diag.json')
    wait_for(lambda: len([p for p in list_episodes([root]) if (p / 'metadata.yaml').exists()]) == 4
             if root.exists() else False, 15, what='4 closed episode bags')
    assert rec.running()
    bags = by_task(root)
    for task, sources, demo, end, expected in SCENARIOS:
        ep = read_episode(bags[task])
        assert not ep.truncated and ep.labels_tagged, task
        assert ep.outcome == {'success': 'success', 'failure': 'failure'}[end], task
        assert ''.join('P' if s == 1 else 'H' if s == 2 else '.' for s in ep.sources) == sources, task
        assert ep.labels.tolist() == lab(expected), task
        assert ep.labels.tolist() == relabel(ep.sources, ep.k, ep.demo).tolist(), task
        assert (ep.demo, ep.k, ep.instruction) == (demo, 10, 'lift the cube'), task
        assert len(ep.images['agentview']) == len(sources), task  # every image of the episode, none other
        assert len(ep.proposals) == len(sources), task  # the policy's proposal also while the human drives
        assert ep.metadata['topic_counts']['/hapo/cmd']['dropped'] == 0
        assert ep.metadata['interventions'] == ep.interventions
        assert ep.metadata['hold_steps'] == sources.count('.') == ep.metadata['steps'] - ep.metadata['driven_steps']
        assert bags[task].name.split('_', 1)[1].startswith('ep')
    assert [e.event.name for e in read_episode(bags['close']).events] == [
        'START', 'INTERVENTION_START', 'INTERVENTION_END', 'INTERVENTION_START', 'INTERVENTION_END', 'FAILURE']
    diag = json.loads((tmp_path / 'diag.json').read_text())
    cam = diag['recorder: /camera/agentview/image_raw']
    assert int(cam['received']) >= 38 and int(cam['dropped']) == 0 and 'rate_hz' in cam
    assert diag['recorder']['episodes_written'] == '4'
    out = subprocess.run([sys.executable, '-m', 'hapo_recorder.info', str(root)], capture_output=True, text=True,
                         check=True).stdout
    assert len(out.splitlines()) == 4 and "task='at3'" in out and 'interventions=2' in out


def test_sigint_closes_episode_as_aborted(start_node, tmp_path):
    root = tmp_path / 'episodes'
    rec = start_node(NODE, params={'output_root': str(root)})
    play([{'task': 'aborted', 'sources': 'PPHHP', 'end': None}])
    rec.signal(signal.SIGINT)
    assert rec.wait(15) == 0, rec.log()
    (path,) = list_episodes([root])
    ep = read_episode(path)
    assert not ep.truncated and ep.outcome == 'aborted'
    assert ep.labels.tolist() == lab('00221')
    assert 'SIGINT' in ep.metadata['reason']


def test_kill9_leaves_truncated_readable_bag(start_node, tmp_path):
    root = tmp_path / 'episodes'
    rec = start_node(NODE, params={'output_root': str(root), 'flush_period_s': 0.1})
    player = subprocess.Popen([sys.executable, PLAYER, json.dumps(
        [{'task': 'crash', 'sources': 'P' * 60 + 'H' * 60, 'end': 'success', 'period_s': 0.05}])])
    try:
        wait_for(lambda: root.exists() and any(root.iterdir()), 20, what='episode bag created')
        wait_for(lambda: 'episode 1 recording' in rec.log(), 15, what='recording started')
        import time

        time.sleep(3.5)  # ~70 steps in: past the policy part, inside the takeover
        rec.signal(signal.SIGKILL)
        rec.wait(10)
    finally:
        player.wait(30)
    (path,) = list_episodes([root])
    assert not (path / 'metadata.yaml').exists()
    ep = read_episode(path)
    assert ep.truncated and ep.outcome == 'truncated' and not ep.labels_tagged
    assert ep.task == 'crash' and ep.k == 10 and ep.instruction == 'lift the cube'
    n = len(ep.sources)
    assert 40 <= n < 120, n  # all but at most ~flush_period of steps survive
    assert ep.sources.tolist() == ([1] * 60 + [2] * 60)[:n]
    assert ep.labels.tolist() == relabel(ep.sources, 10).tolist()
    out = subprocess.run([sys.executable, '-m', 'hapo_recorder.info', str(root)], capture_output=True, text=True,
                         check=True).stdout
    assert 'outcome=truncated (truncated' in out and f'steps={n}' in out


def test_a_recorder_restarted_mid_episode_continues_it_in_a_linked_bag(start_node, tmp_path):
    # the fault matrix (bench/faults.py): a recorder restarted by its supervisor lost the episode it came back in
    import time

    root = tmp_path / 'episodes'
    params = {'output_root': str(root), 'flush_period_s': 0.1}
    rec = start_node(NODE, params=params)
    script = 'P' * 100 + 'H' * 60 + 'P' * 60
    player = subprocess.Popen([sys.executable, PLAYER, json.dumps(
        [{'task': 'restart', 'sources': script, 'end': 'success', 'period_s': 0.05}])])
    try:
        wait_for(lambda: 'episode 1 recording' in rec.log(), 20, what='recording started')
        time.sleep(1.5)
        rec.signal(signal.SIGKILL)
        rec.wait(10)
        again = start_node(NODE, params=params)
        wait_for(lambda: 'it continues' in again.log(), 30, what=f'the episode resumed\n{again.log()}')
    finally:
        assert player.wait(60) == 0
    wait_for(lambda: len(list_episodes([root])) == 2 and all(
        (p / 'metadata.yaml').exists() for p in list_episodes([root])[1:]), 15, what='the continuation closed')
    first, cont = (read_episode(p, decode_images=False) for p in list_episodes([root]))
    assert first.truncated and not cont.truncated and cont.outcome == 'success'
    assert cont.metadata['continuation_of'] == first.path.name and cont.task == 'restart'
    assert [e.stamp_ns for e in cont.events if e.event.name == 'START'] == [
        e.stamp_ns for e in first.events if e.event.name == 'START'], 'the START of the episode it continues'
    # hapo/cmd is transient local: the continuation holds the steps executed while no recorder ran (and repeats
    # some the cut bag holds); joined, the episode has every executed step once, as the player sent them
    assert cont.step_stamps_ns[0] <= first.step_stamps_ns[-1] + int(2e9), 'history, not only what came after'
    whole = join_continuation(first, cont)
    assert ''.join('P' if s == 1 else 'H' for s in whole.sources) == script
    assert (np.diff(whole.step_stamps_ns) > 0).all()
    assert whole.labels.tolist() == relabel(whole.sources, whole.k).tolist()
    out = subprocess.run([sys.executable, '-m', 'hapo_recorder.info', str(root)], capture_output=True, text=True,
                         check=True).stdout
    assert f'outcome=success continues {first.path.name}' in out, out


def test_unwritable_output_dir_aborts_episode_node_stays_up(start_node, tmp_path):
    blocker = tmp_path / 'blocker'
    blocker.write_text('a file where the output directory should be')
    root = blocker / 'episodes'
    rec = start_node(NODE, params={'output_root': str(root)})
    play([{'task': 'lost', 'sources': 'PPP', 'end': 'success'}])
    wait_for(lambda: 'cannot create output root' in rec.log(), 10, what='one-line error in the log')
    assert rec.running()
    line = next(x for x in rec.log().splitlines() if 'cannot create output root' in x)
    assert str(root) in line and 'recorder continues' in line
    blocker.unlink()
    blocker.mkdir()
    play([{'task': 'kept', 'sources': 'PPH', 'end': 'success'}])
    wait_for(lambda: root.exists() and len(list_episodes([root])) == 1
             and (list_episodes([root])[0] / 'metadata.yaml').exists(), 10, what='next episode recorded')
    assert read_episode(list_episodes([root])[0]).labels.tolist() == [0, 0, 2]


def test_through_the_mux_joystick_takeover(start_node, tmp_path):
    # the integration path: sim/policy/joystick stand-ins -> real mux_node -> real recorder_node -> bag
    root = tmp_path / 'episodes'
    rec = start_node(NODE, params={'output_root': str(root), 'k': 3})
    start_node('hapo_teleop.mux_node')
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name('joy_player.py')), '30', '12', '20'],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    wait_for(lambda: root.exists() and any((p / 'metadata.yaml').exists() for p in list_episodes([root])), 10,
             what='episode closed by the mux success event')
    (path,) = list_episodes([root])
    ep = read_episode(path)
    assert ep.outcome == 'success' and ep.task == 'mux', rec.log()
    src = ep.sources.tolist()
    assert src.count(2) >= 5 and ep.interventions == 1, src  # the deadman hold became human steps
    first_human = src.index(2)
    assert src[:first_human].count(1) >= 3
    assert ep.labels.tolist() == relabel(ep.sources, 3).tolist()
    before = [i for i in range(first_human) if src[i] == 1][-3:]
    assert [int(ep.labels[i]) for i in before] == [0, 0, 0]
    assert int((ep.labels == 0).sum()) == 3
    assert [e.event.name for e in ep.events if e.event.name.startswith('INTERVENTION')] == [
        'INTERVENTION_START', 'INTERVENTION_END']


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (root only): a real ENOSPC, not a permission error."""
    mount = tmp_path / 'disk'
    mount.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(mount)], capture_output=True).returncode:
        pytest.skip('cannot mount a tmpfs here (needs root)')
    yield mount
    subprocess.run(['umount', '-l', str(mount)], check=False)


def test_disk_full_mid_episode_aborts_it_and_keeps_what_was_recorded(start_node, small_disk):
    root = small_disk / 'episodes'
    rec = start_node(NODE, params={'output_root': str(root), 'k': 2})
    play([{'task': 'first', 'sources': 'PPPHHP', 'end': 'success'}])
    wait_for(lambda: len(list_episodes([root])) == 1 and (list_episodes([root])[0] / 'metadata.yaml').exists(), 10,
             what='first episode closed')
    # 60 frames of 200x200 rgb8 = 7 MB: the disk fills mid-episode.
    play([{'task': 'big', 'sources': 'P' * 60, 'end': 'success', 'image_px': 200, 'period_s': 0.03}])
    wait_for(lambda: 'episode aborted, recorder continues' in rec.log(), 15, what='one-line error in the log')
    line = next(x for x in rec.log().splitlines() if 'episode aborted' in x)
    assert 'No space left on device' in line and str(root) in line
    assert rec.running()
    first = read_episode(by_task(root)['first'])  # what was recorded before is intact
    assert first.outcome == 'success' and first.labels.tolist() == [1, 0, 0, 2, 2, 1]
    subprocess.run(['mount', '-o', 'remount,size=64m', str(small_disk)], check=True)
    play([{'task': 'after', 'sources': 'PPH', 'end': 'failure'}])
    wait_for(lambda: 'after' in by_task(root) and (by_task(root)['after'] / 'metadata.yaml').exists(), 10,
             what='the next episode recorded once there is space')
    assert read_episode(by_task(root)['after']).outcome == 'failure'
