"""Helpers shared by the tests (imported as ``support.NAME``; conftest puts tests/ on sys.path)."""
