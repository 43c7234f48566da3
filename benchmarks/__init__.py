"""Benchmarks of qr-integrations (run as `python -m benchmarks run NAME`); not part of the installed package."""
