"""Resident memory of the measuring process while the measured work runs.

`ru_maxrss` would report the process's peak over its whole life (imports, seeding, set-up), so
the benchmarks sample the resident set while the timed work runs instead.
"""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path
from types import TracebackType

SAMPLE_SECONDS = 0.02


def rss_mib() -> float:
    """The resident set right now."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


class RssSampler:
    """`async with RssSampler() as sampler:` samples every 20 ms in the running event loop;
    `sampler.peak` is the highest resident set seen (MiB), the block's last moment included."""

    def __init__(self) -> None:
        self.peak = rss_mib()
        self._stop = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RssSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._stop = True
        if self._task is not None:
            await self._task
        self.peak = max(self.peak, rss_mib())

    async def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, rss_mib())
            await asyncio.sleep(SAMPLE_SECONDS)
