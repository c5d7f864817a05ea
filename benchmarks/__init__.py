"""Benchmarks and load tests that print figures and a JSON line; each has a --quick mode the test suite runs."""
