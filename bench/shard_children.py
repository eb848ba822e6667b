"""The measured children of bench/batch_scale.py for the sharded run, each in a fresh interpreter:

    python bench/shard_children.py stage DATA_DIR END_DATE N_SHARDS OUT.json
    python bench/shard_children.py shard DATA_DIR END_DATE INDEX OUT.json
    python bench/shard_children.py seal  DATA_DIR END_DATE OUT.json

``stage`` is the sharded ``train`` task (``batch.shards.stage``), ``shard`` one ``candidates_shard`` task
(``build_shard`` of the INDEX-th range of the staged plan), ``seal`` the ``seal_run`` task. Each writes its
wall time, its own CPU time and peak RSS (``VmHWM``) to OUT.json.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from common import current_rss_mib, peak_rss_mib, write_json


def main(argv: list[str]) -> None:
    from batch import shards
    from shared.config import get_settings
    from shared.ids import parse_date

    kind, data_dir, end = argv[0], Path(argv[1]), parse_date(argv[2])
    out = Path(argv[-1])
    settings = get_settings(data_dir=data_dir)
    rss0 = current_rss_mib()
    start = time.perf_counter()
    result: dict = {}
    if kind == "stage":
        steps: dict[str, float] = {}
        ranges = shards.stage(settings, end, int(argv[3]), log=lambda name, s: steps.__setitem__(name, s))
        result = {"timings_s": steps, "n_shards": len(ranges)}
    elif kind == "shard":
        shard = shards.planned_shards(settings, end)[int(argv[3])]
        result = {"timings_s": shards.build_shard(settings, end, shard), "users": len(shard.rows)}
    elif kind == "seal":
        run_dir = shards.seal_run(settings, end)
        manifest = json.loads((run_dir / "manifest.json").read_text())
        result = {"content_hash": manifest["content_hash"], "seal_s": manifest["timings_s"]["seal"]}
    else:
        raise SystemExit(f"unknown child kind {kind!r}")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    write_json(
        out,
        result
        | {
            "work_s": round(time.perf_counter() - start, 3),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "rss_after_imports_mib": round(rss0, 1),
            "peak_rss_mib": round(peak_rss_mib(), 1),
        },
    )


if __name__ == "__main__":
    main(sys.argv[1:])
