"""The fused model: torch lives only in this package, and is imported only by its submodules."""
