"""Paired bootstrap: against a direct computation, a known answer, and the pairing itself."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from medfm_hf.reporting.stats import PairedBootstrap, paired_drop, resample_counts
from medfm_hf.reporting.tables import TaskAnalysis


def _direct(clean, pert, n_boot, seed, relative=False):
    """The textbook loop: draw image indices, take both scores of the drawn images, percentile interval."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(clean), size=(n_boot, len(clean)))
    vals = []
    for i in idx:
        d = clean[i].mean() - pert[i].mean()
        vals.append(d / clean[i].mean() if relative else d)
    point = clean.mean() - pert.mean()
    return (point / clean.mean() if relative else point), *np.quantile(vals, [0.025, 0.975])


@pytest.mark.parametrize("relative", [False, True])
def test_matches_direct_computation(relative):
    rng = np.random.default_rng(3)
    clean = rng.uniform(0.2, 0.95, 40)
    pert = clean - rng.uniform(0, 0.3, 40)
    est = paired_drop(clean, pert, n_boot=700, rng=np.random.default_rng(11), relative=relative)
    v, lo, hi = _direct(clean, pert, 700, 11, relative)
    assert est.value == pytest.approx(v, abs=1e-12)
    assert est.lo == pytest.approx(lo, abs=1e-12) and est.hi == pytest.approx(hi, abs=1e-12)
    assert est.n == 40


def test_counts_are_the_index_draws():
    counts = resample_counts(5, 3, np.random.default_rng(0))
    idx = np.random.default_rng(0).integers(0, 5, size=(3, 5))
    assert np.array_equal(counts, np.stack([np.bincount(i, minlength=5) for i in idx]))


def test_known_answer_binomial():
    # Drops are 1 on k of n images, 0 elsewhere: a resampled mean drop is Binomial(n, k/n) / n, so its
    # mean, spread and 2.5 / 97.5 % quantiles are known exactly.
    n, k = 50, 15
    clean = np.ones(n)
    pert = clean.copy()
    pert[:k] = 0.0
    boot = PairedBootstrap(np.c_[clean, pert], n_boot=20000, rng=np.random.default_rng(5))
    samples = boot.evaluate(lambda m: m[:, 0] - m[:, 1])
    p = k / n
    assert samples[0] == pytest.approx(p)
    assert samples[1:].mean() == pytest.approx(p, abs=0.002)
    assert samples[1:].std() == pytest.approx(np.sqrt(p * (1 - p) / n), rel=0.03)
    est = boot.estimate(lambda m: m[:, 0] - m[:, 1])
    assert abs(est.lo - sps.binom.ppf(0.025, n, p) / n) <= 1 / n
    assert abs(est.hi - sps.binom.ppf(0.975, n, p) / n) <= 1 / n


def test_constant_drop_has_zero_width_interval():
    clean = np.linspace(0.05, 0.95, 30)
    est = paired_drop(clean, clean - 0.1, n_boot=500, rng=np.random.default_rng(0))
    assert est.value == pytest.approx(0.1) and est.lo == pytest.approx(0.1) and est.hi == pytest.approx(0.1)


def test_fails_if_clean_and_perturbed_resampled_independently():
    # Images differ a lot, the per-image drop hardly at all. Paired: a narrow interval around 0.05.
    # Resampling clean and perturbed separately (shown below) gives an interval ten times wider.
    rng = np.random.default_rng(1)
    clean = rng.uniform(0.1, 0.95, 60)
    pert = clean - 0.05 + rng.normal(0, 0.003, 60)
    est = paired_drop(clean, pert, n_boot=1000, rng=np.random.default_rng(2))
    assert est.hi - est.lo < 0.003
    assert est.lo < 0.05 < est.hi
    r = np.random.default_rng(2)
    ind = [clean[r.integers(0, 60, 60)].mean() - pert[r.integers(0, 60, 60)].mean() for _ in range(1000)]
    lo, hi = np.quantile(ind, [0.025, 0.975])
    assert hi - lo > 10 * (est.hi - est.lo)  # the threshold above tells the two apart


def test_table_intervals_are_paired_and_match_direct(results_dirs):
    from medfm_hf.reporting.load import load_results

    res = load_results(results_dirs[:1])
    an = TaskAnalysis(res.samples, n_boot=400, rng=np.random.default_rng(9))
    row = an.by_perturbation().set_index("perturbation").loc["derm_hair"]
    # direct: derm_hair holds the dermoscopy images only; the table resamples all images of the task, so
    # reproduce that: same draws over an.images, mean over levels of (clean - perturbed) on drawn images
    s = res.samples
    piv = s[s["name"] == "derm_hair"].pivot(index="image_id", columns="level", values="score")
    clean = s[s["kind"] == "clean"].set_index("image_id")["score"]
    counts = resample_counts(len(an.images), 400, np.random.default_rng(9))
    vals = []
    for w in counts:
        wi = dict(zip(an.images, w))
        ww = np.array([wi[i] for i in piv.index])
        c = (ww * clean.loc[piv.index].to_numpy()).sum() / ww.sum()
        vals.append(np.mean([c - (ww * piv[lv].to_numpy()).sum() / ww.sum() for lv in piv.columns]))
    assert row["drop"].value == pytest.approx((clean.loc[piv.index].to_numpy()[:, None] - piv.to_numpy()).mean())
    assert row["drop"].lo == pytest.approx(np.quantile(vals, 0.025), abs=1e-12)
    assert row["drop"].hi == pytest.approx(np.quantile(vals, 0.975), abs=1e-12)
    assert row["drop"].hi - row["drop"].lo < 0.02  # the drop is consistent per image: paired CI is narrow
    assert row["clean"].hi - row["clean"].lo > 0.05  # while the images themselves vary


def test_compare_known_answers():
    a = np.linspace(0.1, 0.9, 25)
    boot = PairedBootstrap(np.c_[a, a - 0.2, a, a - 0.1], n_boot=500, rng=np.random.default_rng(0))
    diff, p = boot.compare(lambda m: m[:, 0] - m[:, 1], lambda m: m[:, 2] - m[:, 3])
    assert (diff.value, diff.lo, diff.hi) == pytest.approx((0.1, 0.1, 0.1))
    assert p == pytest.approx(1 / 501)
    same, p_same = boot.compare(lambda m: m[:, 0] - m[:, 1], lambda m: m[:, 0] - m[:, 1])
    assert same.value == 0 and p_same == 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="same images"):
        paired_drop(np.ones(3), np.ones(4), rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="seeded"):
        PairedBootstrap(np.ones((3, 2)))
    with pytest.raises(ValueError, match="at least one image"):
        resample_counts(0, 10, np.random.default_rng(0))


def test_module_example():
    import doctest

    import medfm_hf.reporting.stats as mod

    assert doctest.testmod(mod).failed == 0
