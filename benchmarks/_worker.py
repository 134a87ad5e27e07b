"""Run a benchmark's measurement in a fresh worker process (isolated memory and threads)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def run_worker(
    python: str | Path, script: Path, argv: list[str], timeout: float, env: dict[str, str]
) -> dict[str, Any]:
    """``python script --worker ARGV``; its last stdout line parsed as a JSON object.

    Returns:
        The worker's result, or ``{"error": ...}`` (the time-out, or the last line of its
        stderr) when it failed.
    """
    try:
        out = subprocess.run(
            [str(python), str(script), "--worker", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit code {out.returncode}"}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))
