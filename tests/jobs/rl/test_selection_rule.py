"""The discrepancy rule on hand-computed cases: Pass@1 = c/N, Pass@N = [c > 0], mean reward; a
prompt is kept when Pass@1 < Pass@N, Pass@N >= passAtNMin, Pass@1 <= passAt1Max and the mean
reward is in [lo, hi]; the cap keeps a seeded subset independent of order."""
from __future__ import annotations

import pytest

from vlmops_jobs.rl import selection as s


def test_pass_at_1_pass_at_n_and_the_mean_by_hand():
    st = s.prompt_stats([1, 0, 0, 1, 0, 0, 0, 0])  # N=8, c=2
    assert (st.samples, st.correct, st.pass_at_1, st.pass_at_n, st.mean_reward) == (8, 2, 0.25, 1.0, 0.25)
    assert st.reward_std == pytest.approx(0.4330127019)  # sqrt(0.25 * 0.75)
    st = s.prompt_stats([0.0, 0.0, 0.0, 0.0])
    assert (st.pass_at_1, st.pass_at_n, st.mean_reward) == (0.0, 0.0, 0.0)
    st = s.prompt_stats([1, 1, 1, 1])
    assert (st.pass_at_1, st.pass_at_n) == (1.0, 1.0)
    # rewards summed over functions (answer + format): correct means reaching the correct reward
    st = s.prompt_stats([2.0, 1.0, 1.0, 0.0], correct_reward=2.0)
    assert (st.correct, st.pass_at_1, st.pass_at_n, st.mean_reward) == (1, 0.25, 1.0, 1.0)
    with pytest.raises(ValueError):
        s.prompt_stats([])


@pytest.mark.parametrize("rewards, rule, verdict", [
    ([1, 0, 0, 0], s.Rule(), s.KEPT),                                     # 0.25 < 1
    ([1, 1, 1, 1], s.Rule(), s.ALWAYS_CORRECT),                           # Pass@1 = Pass@N = 1
    ([0, 0, 0, 0], s.Rule(), s.NEVER_CORRECT),                            # Pass@1 = Pass@N = 0
    ([1, 1, 1, 0], s.Rule(pass_at_1_max=0.5), s.PASS_AT_1_HIGH),          # 0.75 > 0.5
    ([1, 1, 0, 0], s.Rule(pass_at_1_max=0.5), s.KEPT),                    # 0.5 <= 0.5
    ([1, 0, 0, 0], s.Rule(reward_lo=0.3, reward_hi=0.9), s.REWARD_OUT_OF_RANGE),  # mean 0.25 < 0.3
    ([1, 1, 1, 0], s.Rule(reward_lo=0.3, reward_hi=0.7), s.REWARD_OUT_OF_RANGE),  # mean 0.75 > 0.7
    ([1, 1, 0, 0], s.Rule(reward_lo=0.5, reward_hi=0.5), s.KEPT),         # bounds are inclusive
])
def test_verdicts(rewards, rule, verdict):
    assert rule.verdict(s.prompt_stats(rewards)) == verdict
    assert rule.keep(s.prompt_stats(rewards)) == (verdict == s.KEPT)


def test_pass_at_n_min_only_matters_below_one():
    # Pass@N is 0 or 1 with N samples: a min above 0 and at most 1 keeps exactly the prompts solved once
    st = s.prompt_stats([0.5, 0.5, 1.0])  # c=1 at correct_reward 1: Pass@N 1, mean 0.667
    assert s.Rule(pass_at_n_min=1.0).keep(st)
    assert s.Rule(pass_at_n_min=1.0, reward_hi=0.6).verdict(st) == s.REWARD_OUT_OF_RANGE


def test_select_caps_by_a_seeded_hash_independent_of_order():
    stats = {f"p{i}": s.prompt_stats([1, 0]) for i in range(10)}
    stats["solved"] = s.prompt_stats([1, 1])
    v = s.select(stats, s.Rule(), max_prompts=4, seed=3)
    assert sum(x == s.KEPT for x in v.values()) == 4 and v["solved"] == s.ALWAYS_CORRECT
    assert sum(x == s.OVER_CAP for x in v.values()) == 6
    reversed_ = dict(reversed(list(stats.items())))
    assert s.select(reversed_, s.Rule(), max_prompts=4, seed=3) == v
    assert s.select(stats, s.Rule(), max_prompts=4, seed=4) != v  # another seed, another subset
    assert s.select(stats, s.Rule()) == {**{f"p{i}": s.KEPT for i in range(10)}, "solved": s.ALWAYS_CORRECT}
