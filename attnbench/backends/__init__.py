from attnbench.backends.registry import BACKENDS, Availability, Backend, available, get, parse_names

__all__ = ["BACKENDS", "Availability", "Backend", "available", "get", "parse_names"]
