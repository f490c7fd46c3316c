"""Benchmarks and their floors (CONTRACT §9): ``python -m bench [names…] [--quick]``."""
