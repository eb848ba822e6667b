"""The measured children of bench/batch_scale.py for the sharded run, each in a fresh interpreter:

    python bench/shard_children.py stage DATA_DIR END_DATE N_SHARDS OUT.json
    python bench/shard_children.py shard DATA_DIR END_DATE INDEX OUT.json
    python bench/shard_children.py seal  DATA_DIR END_DATE OUT.json
    python bench/shard_children.py begin|publish|finish DATA_DIR END_DATE REDIS_URL PREFIX N_SHARDS INDEX OUT.json

``stage`` is the sharded ``train`` task (``batch.shards.stage``), ``shard`` one ``candidates_shard`` task
(``build_shard`` of the INDEX-th range of the staged plan), ``seal`` the ``seal_run`` task; ``begin``,
``publish`` (the INDEX-th of N_SHARDS user ranges) and ``finish`` the staged publish of the complete run
into the Redis at REDIS_URL under key prefix PREFIX. Each writes its
wall time, its own CPU time and peak RSS (``VmHWM``) to OUT.json.
"""

from __future__ import annotations

import datetime as dt
import json
import resource
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from common import current_rss_mib, peak_rss_mib, write_json

if TYPE_CHECKING:
    from shared.config import Settings


def main(argv: list[str]) -> None:
    from batch import shards
    from shared.config import get_settings
    from shared.ids import parse_date

    kind, data_dir, end = argv[0], Path(argv[1]), parse_date(argv[2])
    out = Path(argv[-1])
    settings = get_settings(data_dir=data_dir)
    if kind in ("begin", "publish", "finish"):
        settings = get_settings(data_dir=data_dir, redis_url=argv[3], key_prefix=argv[4], batch_shards=int(argv[5]))
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
    elif kind in ("begin", "publish", "finish"):
        result = _publish_step(kind, settings, end, int(argv[6]))
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


def _publish_step(kind: str, settings: Settings, end: dt.date, index: int) -> dict:
    from batch import publish
    from batch.artifacts import run_dir_for
    from feature_store.redis_store import RedisStore

    run_dir = run_dir_for(settings.runs_dir, end)
    with RedisStore.from_settings(settings) as store:
        if kind == "begin":
            version, ranges = publish.begin_publish(run_dir, store.versions, settings)
            return {"version": version, "ranges": [r.to_dict() for r in ranges]}
        if kind == "publish":  # publish.publish_users, with loading and writing timed apart
            from batch.artifacts import RunArtifacts
            from batch.shards import user_ranges

            start = time.perf_counter()
            data = publish.version_data(RunArtifacts.load(run_dir, mmap=True))
            load_s = time.perf_counter() - start
            shard = user_ranges(len(data.user_ids), settings.batch_shards)[index]
            start = time.perf_counter()
            users = store.versions.write_user_range(data.version, data, shard.rows)
            return {"users": users, "load_s": round(load_s, 3), "write_s": round(time.perf_counter() - start, 3)}
        result = publish.finish_publish(run_dir, store.versions)
        return {"version": result.version, "n_users": result.n_users}


if __name__ == "__main__":
    main(sys.argv[1:])
