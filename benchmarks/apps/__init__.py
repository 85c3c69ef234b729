"""Servers the benchmark compares (each one is also a standalone script: `python FILE --help`)."""
