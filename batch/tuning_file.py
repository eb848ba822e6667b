"""What a ``hybridrec tune`` run leaves for the next batch run: ``<data_dir>/tuning/best.json``.

File format (written by ``lab.tune``, read here)::

    {"best": {"weight_user": float, "weight_session": float, "weight_popularity": float,
              "weight_covisit": float (optional), "session_half_life": float,
              "precomputed_weight_popularity": float (optional)},
     "als": {"factors": int, "regularization": float, "alpha": float, "iterations": int},
     "reranker": {"kind": "linear", "features": [str, ...], "weights": [float, ...], "bias": float, ...},
     "metric": "hybrid_hit_rate_at_10", "grid": [...], "als_search": {...}, "split": {...}, "seed": int, ...}

``run_batch`` trains with ``als`` when the file has it (a file written before the ALS search existed
has no ``als`` and means "train with Settings") and copies ``best`` into the run's manifest as
``params.blend``; publishing carries it into the version meta, and the API ranks that version with it
(``online.ranking.BlendParams.for_version``), so a blend always travels with the model it was
published with.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from batch.train import AlsParams
from shared.errors import ConfigError
from shared.schemas import BLEND_FIELDS, OPTIONAL_BLEND_FIELDS

ALS_INT_FIELDS = ("factors", "iterations")
ALS_FLOAT_FIELDS = ("regularization", "alpha")
_FIX = "rerun `hybridrec tune` or delete it"


def _read(path: Path) -> dict[str, Any] | None:
    """The tuning file as a dict, None when there is none; ConfigError when it is not a JSON object."""
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path} is not a tuning result ({exc!r}); {_FIX}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} is not a tuning result (a JSON {type(doc).__name__}); {_FIX}")
    return doc


def read_tuned_blend(path: Path) -> dict[str, float] | None:
    """``best`` of the tuning file at ``path`` as {field: float}, or None when there is no file.

    Raises ConfigError for a file that exists but is not a usable blend (a silent fallback would
    publish the defaults while the operator believes the tuned weights are live).
    """
    doc = _read(path)
    if doc is None:
        return None
    try:
        best = doc["best"]
        blend = {name: float(best[name]) for name in BLEND_FIELDS if name in best or name not in OPTIONAL_BLEND_FIELDS}
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a tuning result ({exc!r}); {_FIX}") from None
    bad = [n for n, v in blend.items() if not math.isfinite(v) or v < 0 or (n == "session_half_life" and v == 0)]
    if bad:
        raise ConfigError(f"{path}: invalid blend value(s) for {bad}: {blend}; {_FIX}")
    return blend


def _number(value: object, integer: bool) -> float:
    """``value`` if it is a JSON number of the right kind (an int for ``integer``), else ValueError."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite {'integer' if integer else 'number'}")
    return value


def read_tuned_als(path: Path) -> AlsParams | None:
    """``als`` of the tuning file at ``path``, or None when there is no file or it has no ``als``.

    None means "train with Settings" (no tuning run, or one from before the ALS search). Raises
    ConfigError for an ``als`` that is not four finite numbers (integer factors and iterations) in
    ``AlsParams``' ranges, with the same reason as ``read_tuned_blend``: a silent fallback would train
    with Settings while the operator believes the tuned model is live.
    """
    doc = _read(path)
    if doc is None or "als" not in doc:
        return None
    als = doc["als"]
    try:
        if not isinstance(als, dict):
            raise TypeError(f"'als' is a JSON {type(als).__name__}, not an object")
        values = {n: _number(als[n], True) for n in ALS_INT_FIELDS}
        values.update({n: float(_number(als[n], False)) for n in ALS_FLOAT_FIELDS})
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} has no usable 'als' section ({exc!r}); {_FIX}") from None
    try:
        return AlsParams(**values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}; {_FIX}") from None


def read_tuned_reranker(path: Path) -> dict[str, Any] | None:
    """The ``reranker`` section of the tuning file: the learned re-ranker to publish with the next run.

    None when there is no file or no section (the API then serves session requests with the blend).
    Checked here for shape only (``kind`` "linear", as many finite weights as distinct feature names,
    a finite bias); whether the API computes those features is the API's check
    (``online.reranker.LinearReranker``), since batch does not import online. ConfigError otherwise.
    """
    doc = _read(path)
    if doc is None or "reranker" not in doc:
        return None
    spec = doc["reranker"]
    try:
        if not isinstance(spec, dict) or spec.get("kind") != "linear":
            raise TypeError("not an object with kind 'linear'")
        names, weights = spec["features"], spec["weights"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            raise TypeError("features must be a list of distinct names")
        numbers = [_number(w, False) for w in [*weights, spec.get("bias", 0.0)]]
        if not names or len(weights) != len(names) or not all(math.isfinite(float(x)) for x in numbers):
            raise ValueError(f"{len(names)} features need as many finite weights, got {weights!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} has no usable 'reranker' section ({exc!r}); {_FIX}") from None
    return spec
