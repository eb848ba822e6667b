"""The two measured children of bench/batch_pipeline.py, each run in a fresh interpreter:

    python bench/batch_children.py pipeline|raw_implicit DATA_DIR END_DATE OUT.json

``pipeline`` runs ``batch.pipeline.run_batch``; ``raw_implicit`` fits and recommends with plain
implicit on the matrix batch_pipeline.py saved to ``DATA_DIR/baseline/train_matrix.npz``. Each writes
its timings, its RSS after imports and its own peak RSS (``VmHWM``) to OUT.json.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from common import current_rss_mib, peak_rss_mib, write_json

MATRIX_FILE = "baseline/train_matrix.npz"


class RssSampler:
    """Samples this process's RSS every 20 ms in a thread; ``take_peak`` returns the peak since the
    previous call (i.e. over one pipeline step, when called from the step log)."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.peak = current_rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, current_rss_mib())

    def take_peak(self) -> float:
        peak, self.peak = max(self.peak, current_rss_mib()), current_rss_mib()
        return peak

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1)


def child_pipeline(data_dir: Path, end: str, out: Path) -> None:
    from batch.pipeline import run_batch
    from shared.config import get_settings
    from shared.ids import parse_date

    settings = get_settings(data_dir=data_dir)
    logged: dict[str, float] = {}  # in the order the steps ran
    step_peak: dict[str, float] = {}
    sampler = RssSampler()

    def log(name: str, secs: float) -> None:
        logged[name] = secs
        step_peak[name] = round(sampler.take_peak(), 1)
        print(f"    {name:<14} {secs:6.2f}s  peak RSS {step_peak[name]:7,.0f} MiB", flush=True)

    rss0 = current_rss_mib()
    start = time.perf_counter()
    with sampler:
        run_dir = run_batch(settings, parse_date(end), log=log)
    wall = time.perf_counter() - start
    manifest = json.loads((run_dir / "manifest.json").read_text())
    write_json(
        out,
        {
            "work_s": round(wall, 3),
            "rss_after_imports_mib": round(rss0, 1),
            "peak_rss_mib": round(peak_rss_mib(), 1),
            # the manifest is written inside the "write" step, so only the log has that one's time
            "timings_s": logged | manifest["timings_s"],
            "step_order": list(logged),
            "step_peak_rss_mib": step_peak,
            "n_interactions": manifest["n_interactions"],
            "n_users": manifest["n_users"],
            "n_items": manifest["n_items"],
            "params": manifest["params"],
        },
    )


def child_implicit(data_dir: Path, out: Path) -> None:
    import numpy as np
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from shared.config import get_settings

    s = get_settings(data_dir=data_dir)
    matrix = sp.load_npz(data_dir / MATRIX_FILE).tocsr()
    rss0 = current_rss_mib()
    userids = np.arange(matrix.shape[0])
    regularization = s.als_regularization
    if regularization == "auto":
        # the number the pipeline resolves "auto" to (batch.train.auto_regularization: 4 x the median
        # confidence 1 + alpha * w), computed here without importing the project
        data = matrix.data[matrix.data > 0].astype(np.float64)
        regularization = float(f"{4 * float(np.median(1.0 + s.als_alpha * data)):.4g}") if data.size else 4.0
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=s.als_factors,
            regularization=regularization,
            alpha=s.als_alpha,
            iterations=s.als_iterations,
            random_state=s.seed,
            use_gpu=False,
        )
        start = time.perf_counter()
        model.fit(matrix, show_progress=False)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        ids, _ = model.recommend(userids, matrix[userids], N=s.n_candidates, filter_already_liked_items=True)
        rec_s = time.perf_counter() - start
    write_json(
        out,
        {
            "work_s": round(fit_s + rec_s, 3),
            "timings_s": {"fit": round(fit_s, 3), "recommend": round(rec_s, 3)},
            "rss_after_imports_mib": round(rss0, 1),
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "recommend_shape": list(ids.shape),
            "params": {
                "factors": s.als_factors,
                "regularization": s.als_regularization,
                "regularization_resolved": regularization,
                "alpha": s.als_alpha,
                "iterations": s.als_iterations,
                "seed": s.seed,
                "n_candidates": s.n_candidates,
            },
        },
    )


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in ("pipeline", "raw_implicit"):
        print(__doc__.splitlines()[2].strip(), file=sys.stderr)
        return 2
    kind, data_dir, end, out = argv[0], Path(argv[1]), argv[2], Path(argv[3])
    if kind == "pipeline":
        child_pipeline(data_dir, end, out)
    else:
        child_implicit(data_dir, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
