"""mtl-bench: a benchmark harness for multi-task learning strategies."""
__version__ = "0.1.0"
