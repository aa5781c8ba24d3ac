"""The fused model: torch lives only in this package, and is imported only by its submodules.

`export_model` (model/export.py) is looked up on first use, so importing this face loads no torch.
"""

from typing import Any

from fusion_pipeline.model.contracts import contract_for_config
from fusion_pipeline.model.errors import ModelError

__all__ = ["ModelError", "contract_for_config", "export_model"]


def __getattr__(name: str) -> Any:
    if name == "export_model":
        from fusion_pipeline.model.export import export_model

        return export_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
