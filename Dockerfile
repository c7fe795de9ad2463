# Image for nself's Docker mode: `nself build` adds one service, plugin-jobs, built
# from this file, and passes PORT, REDIS_HOST/PORT/PASSWORD, DATABASE_URL and the
# POSTGRES_* variables. One container runs the API, the workers and the scheduler.
FROM python:3.11-slim

# wget serves the health check that nself adds to the service (GET /health).
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget postgresql-client \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /plugin
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY . .

ENV PYTHONPATH=/plugin/lib \
    JOBS_HOME=/data \
    PYTHONUNBUFFERED=1
EXPOSE 3105
CMD ["python", "-m", "nself_jobs.cli.main", "up"]
