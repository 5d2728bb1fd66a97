"""The benchmark scripts, and `python -m benchmarks`, which runs them all and tabulates each
figure against its baseline from the same run."""
