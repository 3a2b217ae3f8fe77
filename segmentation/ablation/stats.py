"""Mean, spread and 95 % confidence intervals over seeds (Student's t; no SciPy needed)."""
import math

# two-sided 95 % quantiles of Student's t (0.975 one-sided) for 1..30 degrees of freedom, then 40, 60, 120, infinity
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
         21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042,
         40: 2.021, 60: 2.000, 120: 1.980}
_NORMAL975 = 1.960


def t975(df):
    """Student's t 0.975 quantile for ``df`` (real, >= 1) degrees of freedom: the table, linear in 1/df between
    its entries (Welch's df are not integers)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    points = sorted(_T975.items())
    if df >= points[-1][0]:
        lo, t_lo = points[-1]
        return t_lo + (_NORMAL975 - t_lo) * (1 - lo / df)
    for (a, ta), (b, tb) in zip(points, points[1:]):
        if a <= df <= b:
            w = (1 / a - 1 / df) / (1 / a - 1 / b)
            return ta + (tb - ta) * w
    return points[0][1]


def mean_std(values):
    """(mean, sample standard deviation; 0 for one value)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def difference_interval(values, reference, paired):
    """(mean difference values - reference, half-width of its 95 % interval or None, method): paired over seeds
    (the same seeds: same initialisation and data order) or Welch's unequal-variance interval."""
    if paired:
        diffs = [v - r for v, r in zip(values, reference)]
        mean, std = mean_std(diffs)
        n = len(diffs)
        return mean, (t975(n - 1) * std / math.sqrt(n) if n > 1 else None), "paired t"
    (m1, s1), (m2, s2) = mean_std(values), mean_std(reference)
    n1, n2 = len(values), len(reference)
    if n1 < 2 or n2 < 2:
        return m1 - m2, None, "Welch t"
    v1, v2 = s1 ** 2 / n1, s2 ** 2 / n2
    if v1 + v2 == 0:
        return m1 - m2, 0.0, "Welch t"
    df = (v1 + v2) ** 2 / (v1 ** 2 / (n1 - 1) + v2 ** 2 / (n2 - 1))
    return m1 - m2, t975(max(df, 1.0)) * math.sqrt(v1 + v2), "Welch t"


def verdict(diff, half_width):
    """A plain statement: better / worse when the 95 % interval excludes 0, else no significant difference."""
    if half_width is None:
        return "one seed: no interval"
    if diff - half_width > 0:
        return "better (95 % CI > 0)"
    if diff + half_width < 0:
        return "worse (95 % CI < 0)"
    return "no significant difference"
