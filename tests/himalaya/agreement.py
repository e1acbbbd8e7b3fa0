"""Reference side of the himalaya agreement test.

usage: python tests/himalaya/agreement.py OUT_DIR

Writes, for each case below, the inputs (x.npy, y.npy, x_test.npy, alphas.npy, meta.json) and
himalaya's RidgeCV results (best_alphas.npy, pred.npy, coef.npy, intercept.npy, cv_scores.npy)
into OUT_DIR/<case>/. tests/ridge_himalaya.rs then runs factortopy's ridge on the same arrays and
checks that the chosen penalties match and the predictions agree to 1e-4 relative.

himalaya runs in float64 (its numpy backend keeps the input dtype), so it is the accurate side;
factortopy computes the products in f32.
"""
import json
import os
import sys
import warnings

import numpy as np


def case_data(rng, n, p, t, n_test, correlated, snr_spread):
    x = rng.randn(n + n_test, p)
    if correlated:
        # Features with a decaying spectrum, like network activations.
        mix = rng.randn(p, p) * (0.7 ** np.arange(p))[None, :]
        x = x @ mix + 0.1 * rng.randn(n + n_test, p)
        x += 2.0  # non-zero means exercise the intercept
    w = rng.randn(p, t)
    signal = x @ w
    signal /= signal.std(0, keepdims=True)
    # Targets range from mostly signal to mostly noise, so different penalties win.
    snr = np.logspace(np.log10(snr_spread[0]), np.log10(snr_spread[1]), t)
    y = signal * snr[None, :] + rng.randn(n + n_test, t) + 0.5 * rng.randn(1, t)
    return x[:n], y[:n], x[n:]


CASES = [
    # name, n, p, targets, test rows, correlated, fit_intercept, folds, alphas, snr range
    ("primal_default_alphas", 120, 10, 40, 30, False, False, 5, [0.1, 1.0], (0.05, 3.0)),
    ("primal_intercept_grid", 200, 30, 300, 50, True, True, 3, list(np.logspace(-2, 5, 15)), (0.02, 3.0)),
    ("primal_wide_grid", 300, 60, 500, 60, False, False, 4, list(np.logspace(-3, 20, 20)), (0.01, 2.0)),
    ("kernel_more_features", 80, 150, 200, 40, True, True, 5, list(np.logspace(-1, 6, 12)), (0.05, 3.0)),
]


def main():
    out = sys.argv[1]
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        set_backend("numpy")
    rng = np.random.RandomState(0)
    for name, n, p, t, n_test, corr, icpt, folds, alphas, snr in CASES:
        x, y, x_test = case_data(rng, n, p, t, n_test, corr, snr)
        # Both sides see the same float32 values; himalaya computes in float64.
        x, y, x_test = (a.astype(np.float32) for a in (x, y, x_test))
        # float32-representable penalties, so both sides use exactly the same grid.
        alphas = np.asarray(alphas, dtype=np.float32).astype(np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = RidgeCV(alphas=alphas, cv=folds, fit_intercept=icpt)
            model.fit(x.astype(np.float64), y.astype(np.float64))
        pred = model.predict(x_test.astype(np.float64))
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        np.save(os.path.join(d, "x.npy"), x)
        np.save(os.path.join(d, "y.npy"), y)
        np.save(os.path.join(d, "x_test.npy"), x_test)
        np.save(os.path.join(d, "alphas.npy"), alphas)
        np.save(os.path.join(d, "best_alphas.npy"), np.asarray(model.best_alphas_, dtype=np.float64))
        np.save(os.path.join(d, "pred.npy"), np.asarray(pred, dtype=np.float64))
        np.save(os.path.join(d, "coef.npy"), np.asarray(model.coef_, dtype=np.float64))
        intercept = model.intercept_ if icpt else np.zeros(t)
        np.save(os.path.join(d, "intercept.npy"), np.asarray(intercept, dtype=np.float64))
        np.save(os.path.join(d, "cv_scores.npy"), np.asarray(model.cv_scores_, dtype=np.float64))
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump({"folds": folds, "fit_intercept": icpt}, f)
        chosen = np.unique(model.best_alphas_).size
        print(f"{name}: {n}x{p} -> {t} targets, {len(alphas)} alphas ({chosen} chosen), {folds} folds, "
              f"intercept {icpt}")


if __name__ == "__main__":
    main()
