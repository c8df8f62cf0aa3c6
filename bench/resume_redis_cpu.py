"""bench/resume_cpu.py with a third variant: resumable streams on the Redis store (issue 10).

    .venv/bin/python bench/resume_redis_cpu.py --runs 3 --seconds 3

The proxy's own CPU per relayed chunk, resume off / memory / redis, in alternating runs; Redis is a
redis-server started here (Debian's, on a free loopback port, no persistence) and runs on the load
core with the mock and the client, so its own CPU is not in the figure: it is the proxy's cost.
With `resume.redis_url` set, the rate and slot checks also go to Redis (once per request, not per chunk).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
import resume_cpu  # noqa: E402

from tests.redis_fixtures import run_redis_server  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp, run_redis_server(Path(tmp)) as redis:
        resume_cpu.VARIANTS["resume on (redis)"] = {
            "resume": {"enabled": True, "store": "redis", "redis_url": redis.url}}
        return resume_cpu.main()


if __name__ == "__main__":
    sys.exit(main())
