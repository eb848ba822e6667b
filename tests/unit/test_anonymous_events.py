"""An anonymous visitor's events (no user, a session) reach training: co-visitation and popularity
learn from them; the user models, which need a user, never see them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd

from batch.artifacts import RunArtifacts, read_json
from batch.ingest import ingest_interactions
from batch.pipeline import run_batch
from shared.config import get_settings

DAY = dt.date(2026, 3, 1)


def _log(tmp_path: Path) -> Path:
    rows = []
    items = [f"i{j}" for j in range(8)]
    for u in range(30):  # known users touch every item in a fixed order: i7 comes 7 steps after i0
        for n, item in enumerate(items):
            rows.append((f"u{u}", item, "view", f"2026-03-01T{n:02d}:{u:02d}:00", f"s{u}"))
    for v in range(20):  # anonymous visits: i0 then i7, every time
        rows.append(("", "i0", "view", f"2026-03-01T20:{v:02d}:00", f"anon{v}"))
        rows.append(("", "i7", "click", f"2026-03-01T20:{v:02d}:30", f"anon{v}"))
    rows.append(("", "i3", "view", "2026-03-01T21:00:00", ""))  # no user, no session: quarantined
    path = tmp_path / "log.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "ts", "session_id"]).to_csv(path, index=False)
    return path


def test_anonymous_sessions_train_covisitation_and_popularity_only(tmp_path: Path) -> None:
    settings = get_settings(data_dir=tmp_path / "data", als_factors=4, als_iterations=2, n_candidates=10, eval_k=5)
    report = ingest_interactions(_log(tmp_path), "csv", settings.interactions_dir, settings.quarantine_dir)
    assert (report.rows_good, report.rows_bad) == (30 * 8 + 40, 1)
    assert report.bad_reasons == {"missing_user_id": 1}

    run = RunArtifacts.load(run_batch(settings, DAY))
    manifest = read_json(run.run_dir / "manifest.json")
    assert manifest["n_anonymous_events"] == 40 and manifest["n_users"] == 30  # no user made of a visit
    assert set(run.user_ids) == {f"u{u}" for u in range(30)}
    items = run.items["item_id"].tolist()
    covisit = run.item_arrays["covisit"][items.index("i0")].tolist()
    # 7 steps is beyond the co-visitation window (3): only the anonymous visits put i7 next to i0
    assert settings.covisit_window < 7 and items.index("i7") in covisit
    popularity = run.item_arrays["popularity"]
    assert popularity[items.index("i7")] > popularity[items.index("i6")]  # clicks of anonymous visitors count
    assert np.all(np.linalg.norm(run.item_arrays["item_factors"], axis=1) > 0)
