"""Benchmark of the jobs plugin against plain RQ and BullMQ; run it with ``bench/run``."""
