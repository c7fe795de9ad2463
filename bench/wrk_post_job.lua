-- wrk script of the benchmark: every request submits one no-op job to POST /api/jobs.
wrk.method = "POST"
wrk.body = '{"type": "noop", "payload": {}}'
wrk.headers["Content-Type"] = "application/json"
