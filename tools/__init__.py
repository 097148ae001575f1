"""Maintainer tools that do not ship with the pytest-uoc package (run them from the repository root)."""
