# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The methods the trainer can run, by name: which loss, which batch ratios (the one place they are defined).

Every method runs on the same dataset and the same loop (DESIGN.md 'The method': baselines kept beside
HAPO); a method differs only in its loss and class ratios, never in a forked loop. Classes are
``hapo_interfaces.enums.Label``; ``loss.ratios`` in the config overrides a method's ratios by display name.

========  ===============================  =================  ==========================================
method    loss                             ratios p / c / u   notes
========  ===============================  =================  ==========================================
hapo      KTO value x adaptive lambda      0.5 / 0.25 / 0.25  the paper's method
kto       KTO value, lambda = 1            0.5 / 0.25 / 0.25  HAPO with ``adaptive=False``
sirius    weighted BC, weights 1 / 2 / 0   0.5 / 0.25 / 0.25  corrections carry half the loss, u dropped
dagger    BC on desirable                  0.5 / 0.5 / 0      policy steps + corrections aggregated
bc        BC on desirable                  1 / 0 / 0          base: BC on demos and policy-run steps
hapo-m1   KTO value x lambda / class mean  0.5 / 0.25 / 0.25  ours: the paper's weights, mean 1 per class
hapo-c    KTO value x lambda on c = 2      0.5 / 0.25 / 0.25  ours: weights on corrections only, others 1
kto-pair  KTO value + DPO on pairs         0.5 / 0.25 / 0.25  ours: each correction vs the policy's proposal
========  ===============================  =================  ==========================================

``hapo-m1`` and ``hapo-c`` are arms of our own (issue 11): the paper's lambdas shrink the desirable terms (about
0.15 at micro-batch 8), which ``hapo-m1`` undoes while keeping their order within a class; ``hapo-c`` keeps the
emphasis on the corrections the paper argues for and leaves policy and undesirable steps at KTO's weight.
``kto-pair`` adds to KTO's unpaired terms a DPO term (``loss.paired_loss``) for every correction whose
observation also has the policy's proposal: the human's action chosen, the policy's rejected.

(p / c / u: the classes policy, correction, undesirable, i.e. c = 1, 2, 0.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hapo_interfaces.enums import TRAINING_LABELS, Label


@dataclass(frozen=True)
class Algo:
    """One trainable method."""

    name: str
    loss: str  # 'preference' (hapo_loss) or 'bc' (bc_loss)
    ratios: dict[Label, float]  # class -> share of each batch, every training class (TRAINING_LABELS order)
    adaptive: bool = False  # preference loss only: HAPO weights on/off
    weighting: str = 'paper'  # adaptive only: 'paper', 'mean1' (per class) or 'corrections' (c = 2 only)
    class_weights: dict[Label, float] = field(default_factory=dict)  # bc loss only: Sirius weights, {} = all 1
    paired: float = 0.0  # preference loss only: weight of the DPO term on corrections paired with a proposal

    @property
    def needs_classes(self) -> tuple[Label, ...]:
        """Label classes that must have samples for this method to make sense."""
        return tuple(c for c, r in self.ratios.items() if r > 0)


def _per_class(policy: float, correction: float, undesirable: float) -> dict[Label, float]:
    return dict(zip(TRAINING_LABELS, (policy, correction, undesirable), strict=True))


ALGOS: dict[str, Algo] = {
    'hapo': Algo('hapo', 'preference', _per_class(0.5, 0.25, 0.25), adaptive=True),
    'kto': Algo('kto', 'preference', _per_class(0.5, 0.25, 0.25), adaptive=False),
    'hapo-m1': Algo('hapo-m1', 'preference', _per_class(0.5, 0.25, 0.25), adaptive=True, weighting='mean1'),
    'hapo-c': Algo('hapo-c', 'preference', _per_class(0.5, 0.25, 0.25), adaptive=True, weighting='corrections'),
    'kto-pair': Algo('kto-pair', 'preference', _per_class(0.5, 0.25, 0.25), paired=1.0),
    'sirius': Algo('sirius', 'bc', _per_class(0.5, 0.25, 0.25), class_weights=_per_class(1.0, 2.0, 0.0)),
    'dagger': Algo('dagger', 'bc', _per_class(0.5, 0.5, 0.0)),
    'bc': Algo('bc', 'bc', _per_class(1.0, 0.0, 0.0)),
}
METHODS = tuple(ALGOS)


def get_algo(name: str) -> Algo:
    """The registered method ``name``; ValueError naming the choices otherwise."""
    try:
        return ALGOS[name]
    except KeyError:
        raise ValueError(f'unknown method {name!r}; choose one of {", ".join(METHODS)}') from None
