"""Benchmarks: the request-path harness (`make bench`, bench/run.py), the bare stack it is
measured against (bench/bare.py), and the encryption and audit cost studies."""
