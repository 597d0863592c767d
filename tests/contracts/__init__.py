"""Contract tests (ape + pytest, MockVerifier). Helpers: eip712.py, helpers.py."""
