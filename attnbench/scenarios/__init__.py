"""Scenario files expanded into runs, and the runner that executes them (locally or on Ray)."""
