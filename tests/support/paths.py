"""The repository's root and this folder, for tests at any depth of tests/ and for the child scripts here."""

from pathlib import Path

SUPPORT = Path(__file__).resolve().parent
ROOT = SUPPORT.parents[1]
