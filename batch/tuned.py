"""The tuned blend a ``hybridrec tune`` run leaves for the next batch run: ``<data_dir>/tuning/best.json``.

File format (written by ``evaluation.tuning``, read here)::

    {"best": {"weight_user": float, "weight_session": float, "weight_popularity": float,
              "session_half_life": float},
     "metric": "hybrid_hit_rate_at_10", "grid": [...], "split": {...}, "seed": int, ...}

``run_batch`` copies ``best`` into the run's manifest as ``params.blend``; publishing carries it into
the version meta, and the API ranks that version with it (``online.ranking.BlendParams.for_version``),
so a blend always travels with the model it was published with.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from shared.errors import ConfigError

# The same names as online.ranking.TUNABLE_FIELDS (a unit test keeps the two in step).
BLEND_FIELDS = ("weight_user", "weight_session", "weight_popularity", "weight_covisit", "session_half_life")
# Fields a tuning file may lack (it predates them): the API then serves their configured value.
OPTIONAL_BLEND_FIELDS = ("weight_covisit",)


def read_tuned_blend(path: Path) -> dict[str, float] | None:
    """``best`` of the tuning file at ``path`` as {field: float}, or None when there is no file.

    Raises ConfigError for a file that exists but is not a usable blend (a silent fallback would
    publish the defaults while the operator believes the tuned weights are live).
    """
    if not path.exists():
        return None
    try:
        best = json.loads(path.read_text())["best"]
        blend = {name: float(best[name]) for name in BLEND_FIELDS if name in best or name not in OPTIONAL_BLEND_FIELDS}
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a tuning result ({exc!r}); rerun `hybridrec tune` or delete it") from None
    bad = [n for n, v in blend.items() if not math.isfinite(v) or v < 0 or (n == "session_half_life" and v == 0)]
    if bad:
        raise ConfigError(f"{path}: invalid blend value(s) for {bad}: {blend}; rerun `hybridrec tune` or delete it")
    return blend
