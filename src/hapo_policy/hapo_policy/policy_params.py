# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""policy_node's parameter schema, importable without rclpy or torch (``hapo deploy --help`` lists it)."""

from __future__ import annotations

from dataclasses import dataclass

from hapo_interfaces.params import param
from hapo_policy.uncertainty import HYSTERESIS_NATS, THRESHOLD_NATS


@dataclass(frozen=True)
class PolicyParams:
    """Parameters of policy_node (config/deploy.yaml)."""

    checkpoint: str = param('', "save_pretrained directory; '' = a fresh seeded UNTRAINED model", read_only=True)
    seed: int = param(0, 'weight seed of the fresh model (checkpoint empty)', lo=0, read_only=True)
    camera_names: str = param('', "comma-separated camera topic names in model camera order; '' = the model's "
                                  "(a fresh model, checkpoint empty, takes these cameras)", read_only=True)
    instruction: str = param('lift the cube', 'instruction until one arrives on hapo/instruction')
    match_stamps: bool = param(True, 'infer on frames sharing one stamp (sim); false = newest of each camera')
    device: str = param('cpu', 'torch device', read_only=True)
    trust_remote_code: bool = param(False, 'run custom code shipped with a foreign checkpoint (OpenVLA needs it); '
                                           'only for checkpoints you trust', read_only=True)
    torch_threads: int = param(0, 'torch intra-op threads; 0 = torch default', lo=0, hi=256, read_only=True)
    uncertain_threshold: float = param(THRESHOLD_NATS, 'hapo/policy/uncertain rises when the largest action-token '
                                                       "entropy of a step exceeds this (the 0.95 quantile on the "
                                                       "shipped Lift base's successful policy steps: hapo "
                                                       'uncertainty, README)', unit='nats', lo=0.01, hi=20.0)
    uncertain_hysteresis: float = param(HYSTERESIS_NATS, 'the flag falls when the largest entropy drops below '
                                                         'threshold - this', unit='nats', lo=0.0, hi=20.0)
    diagnostics_period_s: float = param(1.0, 'period of /diagnostics', unit='s', lo=0.05, hi=60.0, read_only=True)
