"""The server's app freezes its start-up heap; an app built any other way (tests) does not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.live_server import cli_environment

# Runs the app's start-up and shut-down in a fresh interpreter, as `commagent serve` would, and
# prints how many objects the collector has set aside for good.
PROBE = """
import asyncio, gc, sys
from communication_agent.api.app import create_app, create_app_for_server

async def main():
    app = create_app_for_server() if sys.argv[1] == "server" else create_app()
    async with app.router.lifespan_context(app):
        print("frozen:", gc.get_freeze_count())

asyncio.run(main())
"""


def _frozen_after_startup(kind: str, tmp_path: Path) -> int:
    env = cli_environment(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'app.db'}",
        secret_key="heap-test-secret-0123456789-abcdefghijklmnop",
        data_dir=str(tmp_path),
        log_level="WARNING",
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE, kind],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = [line for line in done.stdout.splitlines() if line.startswith("frozen:")]
    assert len(answer) == 1, done.stdout
    return int(answer[0].split()[1])


def test_the_server_app_freezes_what_start_up_loaded(tmp_path: Path) -> None:
    # Modules, routes, templates and mappings: tens of thousands of objects at least.
    assert _frozen_after_startup("server", tmp_path) > 10_000


def test_an_app_built_for_tests_leaves_the_heap_alone(tmp_path: Path) -> None:
    assert _frozen_after_startup("plain", tmp_path) == 0
