"""Benchmark: dv's k-means (as `dv cluster` runs it) against fairseq's recipe, scikit-learn MiniBatchKMeans.

Both fit the same seeded Gaussian mixture (default 200k x 768 vectors around 1500 centres, k=1000),
under the same thread limit, one after the other; the table reports fit time and inertia (mean
squared distance of every vector to its nearest centroid, computed the same way for both) and the
ratios dv / scikit-learn. scikit-learn runs with fairseq learn_kmeans.py's defaults: init k-means++,
max_iter 100, batch_size 10000, tol 0.0, max_no_improvement 100, init_size None, n_init 20,
reassignment_ratio 0.0 (n_init repeats only the seeding; the best seed is then run once).

    python bench/kmeans.py                      # the full benchmark (scikit-learn takes many minutes)
    python bench/kmeans.py --small              # a smoke test in seconds
    python bench/kmeans.py --faiss-default      # also FAISS's own random initialisation, 20 iterations
    python bench/kmeans.py --sklearn-n-init 1 --time-seeding   # n_init 1, plus one timed seeding -> n_init 20

dv runs before and after scikit-learn and the mean is reported, so a change of machine load during
the long scikit-learn fit weighs on both sides. Results also go to bench/results/kmeans.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def mixture(n: int, dim: int, centres: int, spread: float, seed: int) -> np.ndarray:
    """``(n, dim)`` float32: unit-variance Gaussian noise around ``centres`` N(0, spread^2) centres."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, dim), dtype=np.float32) * spread
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x += means[rng.integers(0, centres, n)]
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--centres", type=int, default=1500)
    parser.add_argument("--spread", type=float, default=0.5, help="std of the mixture centres (noise std is 1)")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--small", action="store_true", help="20k x 768, 150 centres, k=100, scikit-learn n_init 3")
    parser.add_argument("--sklearn-n-init", type=int, default=20)
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument("--faiss-default", action="store_true", help="also FAISS with random init, 20 iterations")
    parser.add_argument(
        "--time-seeding",
        action="store_true",
        help="also time one scikit-learn k-means++ seeding on MiniBatchKMeans' init sample (3 x batch) and "
        "project the fit time at n_init 20 (n_init repeats only that seeding)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "kmeans.json")
    args = parser.parse_args()
    if args.small:
        args.n, args.centres, args.k, args.sklearn_n_init = 20_000, 150, 100, 3

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    from dvcli.units.kmeans import assign, fit_kmeans
    from stages.cluster import ClusterConfig

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    x = mixture(args.n, args.dim, args.centres, args.spread, args.seed)
    defaults = ClusterConfig(features=[], out=Path("."))
    results: dict[str, dict[str, float]] = {}

    def inertia(centroids: np.ndarray) -> float:
        return float(assign(x, centroids)[1].mean())

    def run_dv(tag: str) -> None:
        with threadpool_limits(args.threads):
            fit = fit_kmeans(
                x,
                args.k,
                niter=defaults.niter,
                seed=args.seed,
                device="cpu",
                init=defaults.init,
                oversample=defaults.oversample,
                seed_points_per_centroid=defaults.seed_points_per_centroid,
                points_per_centroid=defaults.points_per_centroid,
                full_iterations=defaults.full_iterations,
            )
        results[tag] = {"seconds": fit.seconds, "seed_seconds": fit.seed_seconds, "inertia": inertia(fit.centroids)}
        print(f"{tag}: {results[tag]}", flush=True)

    run_dv("dv (before)")
    if not args.skip_sklearn:
        from sklearn.cluster import MiniBatchKMeans

        km = MiniBatchKMeans(
            n_clusters=args.k,
            init="k-means++",
            max_iter=100,
            batch_size=10000,
            tol=0.0,
            max_no_improvement=100,
            init_size=None,
            n_init=args.sklearn_n_init,
            reassignment_ratio=0.0,
            compute_labels=False,
            random_state=args.seed,
        )
        with threadpool_limits(args.threads):
            start = time.perf_counter()
            km.fit(x)
            seconds = time.perf_counter() - start
        results["scikit-learn"] = {
            "seconds": seconds,
            "inertia": inertia(km.cluster_centers_),
            "steps": int(km.n_steps_),
        }
        print(f"scikit-learn: {results['scikit-learn']}", flush=True)
        if args.time_seeding and args.sklearn_n_init < 20:
            from sklearn.cluster import kmeans_plusplus

            sample = x[np.random.default_rng(args.seed).integers(0, len(x), 3 * 10000)]
            with threadpool_limits(args.threads):
                start = time.perf_counter()
                kmeans_plusplus(sample, args.k, random_state=args.seed)
                seeding = time.perf_counter() - start
            results["scikit-learn, n_init 20 (projected)"] = {
                "seconds": seconds + (20 - args.sklearn_n_init) * seeding,
                "inertia": results["scikit-learn"]["inertia"],
                "seeding_seconds": seeding,
            }
            print(f"one k-means++ seeding: {seeding:.1f} s", flush=True)
        run_dv("dv (after)")
    if args.faiss_default:
        kmeans = faiss.Kmeans(args.dim, args.k, niter=20, seed=args.seed, verbose=False)
        start = time.perf_counter()
        kmeans.train(x)
        results["faiss default"] = {"seconds": time.perf_counter() - start, "inertia": inertia(kmeans.centroids)}
        print(f"faiss default: {results['faiss default']}", flush=True)

    dv_runs = [v for k, v in results.items() if k.startswith("dv")]
    dv = {key: float(np.mean([r[key] for r in dv_runs])) for key in ("seconds", "inertia")}
    print(f"\n{args.n} x {args.dim}, {args.centres} centres, k={args.k}, {args.threads} threads")
    print(f"{'method':<38}{'fit seconds':>14}{'inertia/point':>16}")
    print(f"{'dv (mean)':<38}{dv['seconds']:>14.1f}{dv['inertia']:>16.2f}")
    for name, r in results.items():
        if not name.startswith("dv"):
            print(f"{name:<38}{r['seconds']:>14.1f}{r['inertia']:>16.2f}")
    if "scikit-learn" in results:
        sk = results["scikit-learn"]
        print(f"\ntime ratio scikit-learn / dv: {sk['seconds'] / dv['seconds']:.1f}x")
        projected = results.get("scikit-learn, n_init 20 (projected)")
        if projected:
            print(f"time ratio scikit-learn at n_init 20 (projected) / dv: {projected['seconds'] / dv['seconds']:.1f}x")
        print(f"inertia ratio dv / scikit-learn: {dv['inertia'] / sk['inertia']:.4f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results, "dv_mean": dv}, indent=2)
        + "\n"
    )


if __name__ == "__main__":
    main()
