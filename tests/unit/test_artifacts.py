import json
import math

from batch.artifacts import write_json


def test_write_json_is_strict_json_with_undefined_metrics_as_null(tmp_path) -> None:
    path = tmp_path / "m.json"
    write_json(path, {"recall": math.nan, "rows": [1.5, math.inf], "nested": {"ndcg": 0.25}})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"recall": None, "rows": [1.5, None], "nested": {"ndcg": 0.25}}
