"""Closed-loop maximum-throughput probe with ``wrk`` (when it is on PATH), cycling through a path list.

Closed loop: each of ``connections`` connections sends its next request as soon as the previous
answer arrives, so this measures capacity (requests/s at saturation), not latency at a given rate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

MAX_PATHS = 5_000
_LUA = """
local paths = {%(paths)s}
local reqs = {}
local i = 0
init = function(args)
  for k, p in ipairs(paths) do reqs[k] = wrk.format("GET", p) end
end
request = function()
  i = i %% #reqs + 1
  return reqs[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,"status":%%d,' ..
    '"timeout":%%d,"p50_us":%%d,"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def available() -> str | None:
    return shutil.which("wrk")


def probe(port: int, paths: list[str], duration_s: int, connections: int) -> dict:
    """Run ``wrk -t1 -c<connections> -d<duration_s>s`` against 127.0.0.1:port; parse its summary."""
    wrk = available()
    if wrk is None:
        raise RuntimeError("wrk is not on PATH")
    lua_paths = ",".join(json.dumps(p) for p in paths[:MAX_PATHS])  # JSON strings are valid Lua strings here
    with tempfile.TemporaryDirectory(prefix="hybridrec-wrk-") as tmp:
        script = Path(tmp) / "paths.lua"
        script.write_text(_LUA % {"paths": lua_paths})
        cmd = [wrk, "-t1", f"-c{connections}", f"-d{duration_s}s", "--timeout", "5s", "-s", str(script)]
        cmd.append(f"http://127.0.0.1:{port}")
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 30)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    r = json.loads(line.removeprefix("WRKJSON "))
    seconds = r["duration_us"] / 1e6
    return {
        "connections": connections,
        "duration_s": round(seconds, 2),
        "requests": r["requests"],
        "rps": round(r["requests"] / seconds, 1),
        "non_2xx": r["status"],
        "socket_errors": r["connect"] + r["read"] + r["write"] + r["timeout"],
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
    }
