"""Benchmarks and their floors (bench/README.md): ``python -m bench [names…] [--quick]``."""
