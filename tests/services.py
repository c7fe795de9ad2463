"""Start or stop the test run's Redis and PostgreSQL with the plugin's embedded-server code.

    python tests/services.py start DIR   prints JOBS_TEST_REDIS_URL=... and JOBS_TEST_DATABASE_URL=...
    python tests/services.py stop DIR
"""

import sys
from pathlib import Path

from nself_jobs.embedded import EmbeddedPostgres, EmbeddedRedis


def servers(base):
    return (EmbeddedRedis(base / "redis", preferred_port=16379, appendonly=False),
            EmbeddedPostgres(base / "postgres", preferred_port=15432))


def main(command, directory):
    base = Path(directory)
    redis_server, postgres_server = servers(base)
    if command == "start":
        redis_url = redis_server.start()
        database_url = postgres_server.start()
        print(f"JOBS_TEST_REDIS_URL={redis_url.rsplit('/', 1)[0]}")
        print(f"JOBS_TEST_DATABASE_URL={database_url}")
    elif command == "stop":
        postgres_server.stop()
        redis_server.stop()
    else:
        raise SystemExit(f"unknown command {command!r}: expected start or stop")


if __name__ == "__main__":
    main(*sys.argv[1:3])
