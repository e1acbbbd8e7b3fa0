"""himalaya side of benches/ridge.rs: fit himalaya's RidgeCV (numpy backend) on the arrays the
Rust benchmark wrote, time fit and predict, and write the choices and predictions back.

usage: python benches/ridge_himalaya.py DIR FOLDS

DIR holds x_train.npy, y_train.npy, x_test.npy and alphas.npy (float32). Writes
himalaya_timing.json, himalaya_best_alphas.npy and himalaya_pred.npy into DIR. The thread count
comes from OPENBLAS_NUM_THREADS / OMP_NUM_THREADS, set by the caller.
"""
import json
import os
import sys
import time
import warnings

import numpy as np


def main():
    d, folds = sys.argv[1], int(sys.argv[2])
    import himalaya
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        set_backend("numpy")
    x_train = np.load(os.path.join(d, "x_train.npy"))
    y_train = np.load(os.path.join(d, "y_train.npy"))
    x_test = np.load(os.path.join(d, "x_test.npy"))
    alphas = np.load(os.path.join(d, "alphas.npy")).tolist()
    # As in himalaya's benchmarks/benchmark_backends.py: default fit_intercept (False), CV
    # targets in batches of 5000.
    model = RidgeCV(alphas=alphas, cv=folds, solver_params=dict(n_targets_batch=5000))
    t0, c0 = time.perf_counter(), time.process_time()
    model.fit(x_train, y_train)
    t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    pred = model.predict(x_test)
    t_pred = time.perf_counter() - t0
    np.save(os.path.join(d, "himalaya_best_alphas.npy"), np.asarray(model.best_alphas_, dtype=np.float32))
    np.save(os.path.join(d, "himalaya_pred.npy"), np.asarray(pred, dtype=np.float32))
    with open(os.path.join(d, "himalaya_timing.json"), "w") as f:
        json.dump(
            {
                "fit": t_fit,
                "fit_cpu": c_fit,
                "predict": t_pred,
                "himalaya": himalaya.__version__,
                "numpy": np.__version__,
                "threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            },
            f,
        )


if __name__ == "__main__":
    main()
