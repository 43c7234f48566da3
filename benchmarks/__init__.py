"""Benchmarks of qr-integrations (run as `python -m benchmarks.<name>`); not part of the installed package."""
