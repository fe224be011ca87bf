"""The telemetry tests use the shared `kube` fixture of tests/conftest.py (the API emulator on loopback)."""
