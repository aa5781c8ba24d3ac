"""Rerun's usage analytics, off whenever the project starts rerun: a vehicle sends no usage data.

The documented switch is ``rerun analytics disable`` (rerun's re_analytics README and ``rerun analytics
--help``): it writes ``analytics_enabled: false`` into the user's rerun config (``analytics.json`` under
``$XDG_CONFIG_HOME/rerun``), which rerun's viewer, its web-viewer server and its CLI all read before they
send anything. There is no environment variable for it. `disable_analytics` runs the switch with the
rerun CLI that ships in the rerun-sdk wheel, then asks ``rerun analytics config`` and refuses to go on
unless it says disabled; the viewer calls it before it creates any recording or starts any rerun process.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

from fusion_pipeline.extras import install_hint
from fusion_pipeline.view.errors import ViewError

__all__ = ["EXTRA_HINT", "disable_analytics", "rerun_cli"]

EXTRA_HINT = f"the viewer needs the [view] extra: {install_hint('view')}"
_TIMEOUT_S = 60.0  # the first run of the 170 MB binary reads it from disk


def rerun_cli() -> Path:
    """The rerun executable shipped in the rerun-sdk wheel (package rerun_cli)."""
    try:
        import rerun_cli
    except ImportError as exc:
        raise ViewError(EXTRA_HINT) from exc
    path = Path(rerun_cli.__file__).with_name("rerun")
    if not path.is_file():
        raise ViewError(f"{path}: rerun-sdk's rerun executable is missing (reinstall the [view] extra)")
    return path


def _rerun(args: list[str], env: Mapping[str, str] | None) -> str:
    command = [str(rerun_cli()), *args]
    try:
        done = subprocess.run(
            command,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,  # the first run prints a welcome text and must never wait for input
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ViewError(f"`rerun {' '.join(args)}` failed: {exc}") from exc
    if done.returncode != 0:
        raise ViewError(f"`rerun {' '.join(args)}` exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


def disable_analytics(env: Mapping[str, str] | None = None) -> Path:
    """Turn rerun's analytics off for the user of `env` (default: this process's environment) and
    return the config file that now says so; a ViewError when rerun does not confirm it."""
    _rerun(["analytics", "disable"], env)
    text = _rerun(["analytics", "config"], env)
    try:
        config = json.loads(text[text.index("{") :])  # after the first-run welcome, if printed
    except ValueError as exc:
        raise ViewError(f"`rerun analytics config` printed no JSON: {text.strip()[-300:]!r}") from exc
    if config.get("analytics_enabled") is not False:
        raise ViewError(f"rerun analytics still enabled after `rerun analytics disable`: {config}")
    return Path(config.get("config_file_path") or os.devnull)
