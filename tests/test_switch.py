"""The automatic stage switch (SwitchRule.observe)."""

from __future__ import annotations

import math

import pytest

from accelerl.switch import SwitchRule


def feed(rule: SwitchRule, evals) -> list[bool]:
    """evals: (step, accelerator return, transformer return, bc loss); returns the decisions."""
    return [rule.observe(*e)[0] for e in evals]


def test_switches_after_patience_close_evaluations_with_plateaued_bc_loss():
    rule = SwitchRule(ratio=0.9, patience=3, plateau=0.05, cap=10**9, random_return=0.0)
    # BC loss flat from the start; the transformer is far behind for three evaluations
    decisions = feed(rule, [(1000 * i, 100.0, 10.0, 0.2) for i in range(1, 4)])
    # then close (>= 90% of the accelerator's gain), but one eval drops out and resets the streak
    decisions += feed(rule, [(4000, 100.0, 95.0, 0.2), (5000, 100.0, 92.0, 0.2), (6000, 100.0, 50.0, 0.2)])
    decisions += feed(rule, [(7000, 100.0, 91.0, 0.2), (8000, 100.0, 99.0, 0.2)])
    assert not any(decisions)
    switch, why = rule.observe(9000, 100.0, 90.0, 0.2)  # third close evaluation in a row
    assert switch and "plateau" in why.lower()


def test_no_switch_while_bc_loss_still_falls():
    rule = SwitchRule(ratio=0.9, patience=2, plateau=0.05, cap=10**9, random_return=0.0)
    losses = [1.0 * 0.8**i for i in range(12)]  # 20% better at every evaluation
    assert not any(feed(rule, [(1000 * (i + 1), 100.0, 100.0, bc) for i, bc in enumerate(losses)]))
    # the first evaluation without improvement ends it: the streak of close evaluations is long
    assert rule.observe(20_000, 100.0, 100.0, losses[-1])[0]


@pytest.mark.parametrize("level", [0.2, -0.2])
def test_a_flat_bc_loss_plateaus_whatever_its_sign(level):
    """With --bc-actor-ascent the BC loss (MSE - lambda Q/|Q|) is negative once the MSE is small;
    a flat negative loss has plateaued, a still-falling one has not."""
    rule = SwitchRule(ratio=0.9, patience=2, plateau=0.05, cap=10**9, random_return=0.0)
    assert feed(rule, [(1000 * i, 100.0, 100.0, level) for i in range(1, 4)]) == [False, False, True]
    falling = SwitchRule(ratio=0.9, patience=2, plateau=0.05, cap=10**9, random_return=0.0)
    losses = [level - 0.1 * i for i in range(6)]  # 0.1 better at each evaluation
    assert not any(feed(falling, [(1000 * (i + 1), 100.0, 100.0, bc) for i, bc in enumerate(losses)]))


def test_no_switch_when_the_accelerator_has_not_learned():
    rule = SwitchRule(ratio=0.9, patience=2, plateau=0.05, cap=10**9, random_return=-1200.0)
    # both at about the random return: the transformer "matches" an accelerator that learned nothing
    evals = [(1000 * i, -1190.0 + i, -1185.0, 0.01) for i in range(1, 20)]
    assert not any(feed(rule, evals))


def test_cap_forces_the_switch():
    rule = SwitchRule(ratio=0.9, patience=2, plateau=0.05, cap=5000, random_return=0.0)
    assert feed(rule, [(1000, 1.0, 0.0, 1.0), (4999, 1.0, 0.0, 0.5)]) == [False, False]
    switch, why = rule.observe(5000, 1.0, 0.0, 0.25)
    assert switch and "cap" in why


def test_min_steps_is_respected():
    rule = SwitchRule(ratio=0.9, patience=2, plateau=0.05, cap=10**9, min_steps=10_000, random_return=0.0)
    early = [(1000 * i, 100.0, 100.0, 0.1) for i in range(1, 10)]  # everything else says "switch"
    assert not any(feed(rule, early))
    # close evaluations only count from min_steps on: two are needed after it
    assert feed(rule, [(10_000, 100.0, 100.0, 0.1), (11_000, 100.0, 100.0, 0.1)]) == [False, True]


def test_negative_returns_pendulum_like():
    """Random -1200, accelerator -200: the transformer needs 90% of the 1000-point gain (-300)."""
    def rule():
        r = SwitchRule(ratio=0.9, patience=2, plateau=0.05, cap=10**9, random_return=-1200.0)
        feed(r, [(1000, -1100.0, -1150.0, 0.05), (2000, -900.0, -1100.0, 0.05)])  # plateaued BC history
        return r

    near = rule()
    assert feed(near, [(3000, -200.0, -290.0, 0.05), (4000, -200.0, -295.0, 0.05)]) == [False, True]
    far = rule()
    # -350 is only 85% of the gain over random (a plain return ratio would be meaningless here)
    assert not any(feed(far, [(3000 + 1000 * i, -200.0, -350.0, 0.05) for i in range(10)]))


def test_non_finite_bc_loss_is_ignored_and_state_round_trips():
    rule = SwitchRule(ratio=0.9, patience=2, plateau=0.05, cap=10**9, random_return=0.0)
    feed(rule, [(1000, 10.0, 10.0, math.nan), (2000, 10.0, 10.0, None), (3000, 10.0, 10.0, 0.5)])
    assert rule.bc_history == [0.5]
    copy = SwitchRule(ratio=0.9, patience=2, plateau=0.05, cap=10**9)  # thresholds come from the config
    copy.load_state_dict(rule.state_dict())
    assert copy == rule
    evals = [(4000 + 1000 * i, 10.0, 10.0, 0.5) for i in range(4)]
    assert feed(copy, evals) == feed(rule, evals)


@pytest.mark.parametrize("patience", [1, 4])
def test_patience_counts_consecutive_evaluations(patience):
    rule = SwitchRule(ratio=0.5, patience=patience, plateau=0.05, cap=10**9, random_return=0.0)
    feed(rule, [(i, 100.0, 0.0, 0.3) for i in range(1, 4)])  # BC plateaued, transformer far behind
    decisions = feed(rule, [(10 + i, 100.0, 60.0, 0.3) for i in range(patience)])
    assert decisions == [False] * (patience - 1) + [True]


def test_rule_and_cap_on_the_same_evaluation_names_the_rule():
    """The reason says why the switch was due: the rule, when it holds at the cap's evaluation."""
    rule = SwitchRule(ratio=0.9, patience=2, plateau=0.05, cap=3000, random_return=0.0)
    assert feed(rule, [(1000, 100.0, 10.0, 1.0), (2000, 100.0, 95.0, 0.5)]) == [False, False]
    switch, why = rule.observe(3000, 100.0, 99.0, 0.6)
    assert switch and "plateaued" in why and "cap" not in why
