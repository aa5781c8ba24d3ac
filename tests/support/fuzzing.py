"""How many cases a fuzz property runs: its CI default, or FP_FUZZ_EXAMPLES for a long campaign.

FP_FUZZ_EXAMPLES=10000 python -m pytest -q --hypothesis-show-statistics tests/test_wire_fuzz.py
"""

import os

__all__ = ["fuzz_examples"]


def fuzz_examples(default: int) -> int:
    """`default` in CI; FP_FUZZ_EXAMPLES when set, for a campaign of that many cases per property."""
    value = os.environ.get("FP_FUZZ_EXAMPLES", "")
    return int(value) if value else default
