"""Agreement between two raters: the statistics by hand."""

import pytest

from rlaif_ray.review.agreement import agrees, cohen_kappa, score_bin, spearman


def test_cohen_kappa_by_hand():
    # 10 items: both say yes on 4, no on 3, they differ on 3 (2 yes/no, 1 no/yes).
    a = ["y"] * 4 + ["n"] * 3 + ["y", "y", "n"]
    b = ["y"] * 4 + ["n"] * 3 + ["n", "n", "y"]
    observed, chance = 0.7, (6 * 5 + 4 * 5) / 100  # a: 6y 4n, b: 5y 5n
    assert cohen_kappa(a, b) == pytest.approx((observed - chance) / (1 - chance))
    assert cohen_kappa(["A", "B"], ["A", "B"]) == 1.0
    assert cohen_kappa(["A", "A"], ["A", "A"]) == 1.0
    assert cohen_kappa([], []) is None


def test_spearman_by_hand_with_ties():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]: Pearson of the ranks.
    assert spearman([1, 5, 5, 9], [1, 2, 3, 4]) == pytest.approx(4.5 / (4.5 * 5.0) ** 0.5)
    assert spearman([3, 3, 3], [1, 2, 3]) is None
    assert spearman([1], [1]) is None


def test_scores_bin_low_middle_high():
    assert [score_bin(s) for s in (1, 3, 3.4, 3.6, 7, 8, 10)] == [0, 0, 0, 1, 1, 2, 2]


def test_a_judge_agrees_with_the_same_winner_or_the_same_side_of_the_midpoint():
    assert agrees("A", "A") and not agrees("tie", "A")
    assert agrees(6.0, 9) and agrees(5.0, 1) and not agrees(5.4, 5.6)
