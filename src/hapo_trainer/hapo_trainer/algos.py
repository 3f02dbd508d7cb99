# SPDX-License-Identifier: Apache-2.0
# SPDX-FileCopyrightText: HAPO workspace authors
"""The methods the trainer can run, by name: which loss, which sampler ratios, what data each needs.

Every method runs on the same dataset and the same loop (DESIGN.md 'The method': baselines kept beside
HAPO); a method differs only in its loss and class ratios, never in a forked loop.

========  ==============================  =======================  ===========================================
method    loss                            ratios c=1 / c=2 / c=0   notes
========  ==============================  =======================  ===========================================
hapo      KTO value x adaptive lambda     0.5 / 0.25 / 0.25        the paper's method
kto       KTO value, lambda = 1           0.5 / 0.25 / 0.25        HAPO with ``adaptive=False``
sirius    weighted BC, {1: 1, 2: 2, 0: 0} 0.5 / 0.25 / 0.25        corrections carry half the loss, c=0 dropped
dagger    BC on desirable                 0.5 / 0.5 / 0            demos/policy steps + corrections aggregated
bc        BC on desirable                 1 / 0 / 0                base: BC on demos and policy-run steps
========  ==============================  =======================  ===========================================
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Algo:
    """One trainable method."""

    name: str
    loss: str  # 'preference' (hapo_loss) or 'bc' (bc_loss)
    ratios: dict[int, float]  # label c -> share of each batch
    adaptive: bool = False  # preference loss only: HAPO weights on/off
    class_weights: dict[int, float] = field(default_factory=dict)  # bc loss only: Sirius weights, {} = all 1
    needs_reference: bool = False  # whether reference log-probs must be cached

    @property
    def needs_classes(self) -> tuple[int, ...]:
        """Label classes that must have samples for this method to make sense."""
        return tuple(c for c, r in self.ratios.items() if r > 0)


ALGOS: dict[str, Algo] = {
    'hapo': Algo('hapo', 'preference', {1: 0.5, 2: 0.25, 0: 0.25}, adaptive=True, needs_reference=True),
    'kto': Algo('kto', 'preference', {1: 0.5, 2: 0.25, 0: 0.25}, adaptive=False, needs_reference=True),
    'sirius': Algo('sirius', 'bc', {1: 0.5, 2: 0.25, 0: 0.25}, class_weights={1: 1.0, 2: 2.0, 0: 0.0}),
    'dagger': Algo('dagger', 'bc', {1: 0.5, 2: 0.5, 0: 0.0}),
    'bc': Algo('bc', 'bc', {1: 1.0, 2: 0.0, 0: 0.0}),
}
METHODS = tuple(ALGOS)


def get_algo(name: str) -> Algo:
    """The registered method ``name``; ValueError naming the choices otherwise."""
    try:
        return ALGOS[name]
    except KeyError:
        raise ValueError(f'unknown method {name!r}; choose one of {", ".join(METHODS)}') from None
