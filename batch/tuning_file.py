"""What a ``hybridrec tune`` run leaves for the next batch run: ``<data_dir>/tuning/best.json``.

The file's format is one pydantic model, :class:`shared.schemas.TuningFile` (``lab.tune`` writes it
and checks it against the model first)::

    {"best": {"weight_user": float, "weight_session": float, "weight_popularity": float,
              "weight_covisit": float (optional), "session_half_life": float,
              "precomputed_weight_popularity": float (optional)},
     "als": {"factors": int, "regularization": float, "alpha": float, "iterations": int},   (optional)
     "reranker": {"kind": "linear", "features": [str, ...], "weights": [float, ...], "bias": float, ...},
                                                                                             (optional)
     "metric": "hybrid_hit_rate_at_10", "grid": [...], "als_search": {...}, "split": {...}, ...}

``run_batch`` trains with ``als`` when the file has it (a file written before the ALS search existed
has no ``als`` and means "train with Settings") and records ``best`` and ``reranker`` in the run
(``serving.json``, part of the content hash) and the manifest (``params.blend``, ``params.reranker``);
publishing carries them into the version meta, and the API ranks that version with them
(``online.blend.BlendParams.for_version``, ``online.reranker.LinearReranker.for_version``), so a blend
always travels with the model it was tuned for.

A file that exists but does not fit the model is refused with every problem and where it is: a
silent fallback would publish the defaults while the operator believes the tuned model is live.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from batch.train import AlsParams
from shared.errors import ConfigError
from shared.schemas import TuningFile

if TYPE_CHECKING:
    from shared.config import Settings

_FIX = "rerun `hybridrec tune` or delete it"


@dataclass(frozen=True)
class CandidateChoice:
    """What builds the precomputed lists (``batch.candidates.candidate_lists``): ``model`` one of
    ``Settings.candidate_model``'s values, ``ease_l2`` EASE's ridge penalty (unused by ``als``; None in
    a tuning file that leaves it out: the configured one)."""

    model: str
    ease_l2: float | None

    @classmethod
    def from_settings(cls, settings: Settings) -> CandidateChoice:
        return cls(model=settings.candidate_model, ease_l2=settings.ease_l2)


@dataclass(frozen=True)
class Tuning:
    """What the next batch run takes from the tuning file; each part None where the file, or its
    section, is absent. ``blend`` holds only the fields the file sets; ``reranker`` the whole section."""

    als: AlsParams | None = None
    blend: dict[str, float] | None = None
    reranker: dict[str, Any] | None = None
    candidates: CandidateChoice | None = None


def read_tuning(path: Path) -> Tuning:
    """The tuning file at ``path`` (all None when there is none); ConfigError when it does not fit
    ``shared.schemas.TuningFile``."""
    if not path.exists():
        return Tuning()
    try:
        doc = TuningFile.model_validate(json.loads(path.read_text()))
    except ValueError as exc:  # a JSONDecodeError or a pydantic ValidationError
        raise ConfigError(f"{path} is not a tuning result: {_explain(exc)}; {_FIX}") from None
    return Tuning(
        als=None if doc.als is None else AlsParams(**doc.als.model_dump()),
        blend=doc.best.model_dump(exclude_unset=True),
        reranker=None if doc.reranker is None else doc.reranker.model_dump(exclude_unset=True),
        candidates=None if doc.candidates is None else CandidateChoice(doc.candidates.model, doc.candidates.ease_l2),
    )


def _explain(exc: ValueError) -> str:
    """Every problem as ``where: what (got value)``, e.g. ``als.factors: Input should be a valid integer (got 6.5)``."""
    if not isinstance(exc, ValidationError):
        return repr(exc)
    problems = []
    for e in exc.errors():
        where = ".".join(map(str, e["loc"])) or "the file"
        shown = "" if e["type"] == "missing" or isinstance(e["input"], dict) else f" (got {e['input']!r})"
        problems.append(f"{where}: {e['msg'].removeprefix('Value error, ')}{shown}")
    return "; ".join(problems)
