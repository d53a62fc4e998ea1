"""Benchmarks of Molam Offline; run them with `.venv/bin/python -m bench.NAME --help`."""
