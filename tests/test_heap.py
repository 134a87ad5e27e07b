"""``limit_heap_fragmentation``: glibc's mmap threshold fixed, once, and only when asked."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gpvae.errors import ValidationError
from gpvae.heap import limit_heap_fragmentation

_PROBE = """
import os, sys
import torch
from gpvae.heap import limit_heap_fragmentation
if sys.argv[1] == "set":
    assert limit_heap_fragmentation() is True
# free a 32 MiB block: with a dynamic threshold glibc raises its threshold to 32 MiB, after
# which 1 MiB blocks come from the heap and stay in the process after they are freed
torch.empty(8 * 1024 * 1024).fill_(1.0)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
keep = []
for i in range(400):
    keep.append(torch.ones(256 * 1024))  # 1 MiB each
    torch.ones(256 * 1024)  # a temporary of the same size
before = rss()
keep = [k for j, k in enumerate(keep) if j % 2]  # free every other block: holes in a heap
print(before - rss())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux only")
def test_freed_blocks_go_back_to_the_system_only_with_the_threshold_fixed() -> None:
    def released(mode: str) -> int:
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
        out = subprocess.run(
            [sys.executable, "-c", _PROBE, mode],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        return int(out.stdout.strip().splitlines()[-1])

    mib = 1024 * 1024
    assert released("set") > 150 * mib  # ~200 freed blocks of 1 MiB are given back
    assert released("default") < 50 * mib  # the dynamic threshold keeps them in the heap


def test_the_user_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert limit_heap_fragmentation() is False


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "64k"])
def test_a_bad_threshold_is_refused(bad: object) -> None:
    with pytest.raises(ValidationError, match="threshold: expected a positive number of bytes"):
        limit_heap_fragmentation(bad)  # type: ignore[arg-type]
