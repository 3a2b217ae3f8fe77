"""Confidence intervals over seeds: the t table against an independent numerical integration, hand-made cases."""
import math

import pytest

from segmentation.ablation.stats import difference_interval, mean_std, t975, verdict


def _t_cdf_central(t, df, steps=20000):
    """P(|T| <= t) for Student's t with ``df`` degrees of freedom, by Simpson's rule on its density."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    f = [c * (1 + (t * i / steps) ** 2 / df) ** (-(df + 1) / 2) for i in range(steps + 1)]
    h = t / steps
    return 2 * h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 30, 60, 120])
def test_t_quantiles_leave_2_5_percent_in_each_tail(df):
    assert _t_cdf_central(t975(df), df) == pytest.approx(0.95, abs=2e-4)


def test_t_quantiles_between_table_entries_and_beyond():
    assert t975(2.5) == pytest.approx(3.5, abs=0.15) and t975(2) > t975(2.5) > t975(3)
    assert _t_cdf_central(t975(45), 45) == pytest.approx(0.95, abs=5e-4)
    assert t975(1e9) == pytest.approx(1.96, abs=1e-6)


def test_paired_interval_by_hand():
    diff, half, method = difference_interval([3.0, 5.0, 7.0], [1.0, 2.0, 3.0], paired=True)
    assert (diff, method) == (3.0, "paired t")
    assert half == pytest.approx(4.303 * 1.0 / math.sqrt(3))  # differences 2, 3, 4: std 1


def test_welch_interval_by_hand():
    a, b = [10.0, 12.0, 14.0], [9.0, 9.5, 10.0, 10.5]
    diff, half, _ = difference_interval(a, b, paired=False)
    va, vb = 4.0 / 3, (5 / 12) / 4  # variances of the means
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    assert diff == pytest.approx(12.0 - 9.75) and half == pytest.approx(t975(df) * math.sqrt(va + vb))


def test_verdicts():
    assert verdict(2.0, 1.0).startswith("better") and verdict(-2.0, 1.0).startswith("worse")
    assert verdict(0.5, 1.0) == "no significant difference" and verdict(1.0, None) == "one seed: no interval"
    assert mean_std([1.0]) == (1.0, 0.0) and mean_std([1.0, 3.0]) == (2.0, math.sqrt(2))
