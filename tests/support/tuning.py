"""Tuning files (``<data_dir>/tuning/best.json``) for tests of what batch reads from them."""

from __future__ import annotations

import json
from pathlib import Path

BLEND = {"weight_user": 0.25, "weight_session": 1.0, "weight_popularity": 0.4, "session_half_life": 3.0}


def write_tuning(path: Path, doc: object) -> Path:
    """``doc`` as JSON at ``path`` (parents created); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path
