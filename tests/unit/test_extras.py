"""Install hints name the extra and its packages, as pyproject.toml declares them (the installed metadata)."""

from __future__ import annotations

from paths import ROOT

from fusion_pipeline.config import tomllib  # tomli on Python 3.10
from fusion_pipeline.extras import extra_requirements, install_hint


def test_an_extra_s_packages_are_pyproject_s() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("train", "ros", "cluster", "view"):
        assert extra_requirements(extra) == declared[extra]
    assert extra_requirements("no-such-extra") == []


def test_a_hint_names_the_extra_and_its_packages_quoted_for_a_shell() -> None:
    hint = install_hint("cluster")
    assert hint.startswith("pip install 'fusion-pipeline[cluster]' (a CPU-only install adds")
    assert hint.endswith(": 'ray[client]>=2.9')")
