"""zkcare benchmarks (run on demand with ``./zk bench``; not part of the test suite)."""
