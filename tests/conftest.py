"""Fixtures: a real database per test (SQLite file, or PostgreSQL when
`COMMAGENT_TEST_DATABASE_URL` is set), the real application over ASGI, and factories."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from communication_agent.api.app import create_app
from communication_agent.core.config import Settings
from communication_agent.core.db import create_engine, create_sessionmaker
from tests.databases import (
    TEST_DATABASE_ENV,
    PostgresScratch,
    SqliteTemplate,
    postgres_reachable,
    server_url,
)
from tests.factories import Factory

TEST_SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnop"
_state: dict[str, object] = {}


def pytest_configure(config: pytest.Config) -> None:
    url = server_url()
    if url is None:
        return
    reason = postgres_reachable(url)
    if reason is None:
        return
    message = f"PostgreSQL at {url.render_as_string(hide_password=True)} is unreachable ({reason})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.exit(f"{message}; under CI=true that is a failure.", returncode=3)
    pytest.exit(f"{message}; skipping the PostgreSQL run (it is required under CI=true).", 0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if server_url() is not None:
        return
    skip = pytest.mark.skip(reason=f"needs PostgreSQL: set {TEST_DATABASE_ENV}")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


def pytest_report_header() -> str:
    url = server_url()
    return (
        f"database: {'PostgreSQL ' + url.render_as_string(hide_password=True) if url else 'SQLite'}"
    )


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    url = server_url()
    if url is not None:
        scratch = PostgresScratch(url)
        scratch.create()
        yield scratch
        scratch.drop()
    else:
        template = SqliteTemplate(tmp_path_factory.mktemp("template"))
        template.create()
        yield template


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their own Settings; stray COMMAGENT_* variables must not leak into them."""
    for name in list(os.environ):
        if name.startswith("COMMAGENT_") and name != TEST_DATABASE_ENV:
            monkeypatch.delenv(name)
    monkeypatch.chdir(Path(__file__).parent.parent)


@pytest.fixture
async def database_url(database_template: object, tmp_path: Path) -> URL:
    """A clean, migrated database for this test."""
    if isinstance(database_template, PostgresScratch):
        await database_template.reset()
        return database_template.url
    assert isinstance(database_template, SqliteTemplate)
    return database_template.copy_to(tmp_path / "db")


@pytest.fixture
def settings(database_url: URL, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=database_url.render_as_string(hide_password=False),
        secret_key=TEST_SECRET_KEY,
    )


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def factory(sessionmaker: async_sessionmaker[AsyncSession]) -> Factory:
    return Factory(sessionmaker)


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The real application with its lifespan (schema check included), spoken to over ASGI."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


@pytest.fixture
async def app_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(settings) as pair:
        yield pair


@pytest.fixture
def client(app_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_client[1]
