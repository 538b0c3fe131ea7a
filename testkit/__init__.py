"""Helpers the tests and the benchmarks share (private services, labelled cut-out cases, the shared photos).
Not part of the hitline package: importable from the repository root (pytest's pythonpath, bench's sys.path)."""
