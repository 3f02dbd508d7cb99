# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""Write a fresh (untrained, seeded) tiny-VLA checkpoint.

    python -m hapo_policy.init_checkpoint --out ckpt/base --camera agentview --camera robot0_eye_in_hand
    python -m hapo_policy.init_checkpoint --out /tmp/ck --image-size 64 --proprio-dim 0 --seed 1
"""

from __future__ import annotations

import argparse
import sys

from hapo_policy.errors import CheckpointError
from hapo_policy.model import VlaPolicy
from hapo_policy.tiny import TinyVlaConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m hapo_policy.init_checkpoint', description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, help='checkpoint directory to write (an existing checkpoint is '
                                                     'replaced; any other non-empty path is refused)')
    parser.add_argument('--camera', action='append', help='camera name, repeat for several (default: agentview)')
    parser.add_argument('--image-size', type=int, default=64, help='model input size in pixels (default 64)')
    parser.add_argument('--proprio-dim', type=int, default=9,
                        help='joint positions fed as one token (default 9 = Panda 7 joints + 2 fingers; 0 = none)')
    parser.add_argument('--seed', type=int, default=0, help='weight initialisation seed (default 0)')
    args = parser.parse_args(argv)
    try:
        config = TinyVlaConfig(camera_names=args.camera or ['agentview'], image_size=args.image_size,
                               proprio_dim=args.proprio_dim)
    except ValueError as exc:
        parser.error(str(exc))
    policy = VlaPolicy.create(config, seed=args.seed)
    try:
        path = policy.save_pretrained(args.out, run_config={'init_checkpoint': vars(args)})
    except (CheckpointError, OSError) as exc:
        print(f'init_checkpoint: cannot write checkpoint {exc}', file=sys.stderr)
        return 1
    print(f'wrote {path} ({policy.num_parameters()} parameters, cameras {config.camera_names}, UNTRAINED)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
