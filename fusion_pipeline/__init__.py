"""fusion-pipeline: a real-time multi-sensor fusion runtime."""

__version__ = "0.1.0"

__all__ = ["__version__"]
