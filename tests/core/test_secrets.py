"""No secret ever appears in a log line or an error message."""

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from communication_agent.adapters.factory import google_oauth_client
from communication_agent.adapters.reasoning_factory import reasoning_model
from communication_agent.core.config import Settings
from communication_agent.core.logging import REDACTED, configure_logging, get_logger, scrubber
from communication_agent.models.enums import Role
from tests.conftest import TEST_SECRET_KEY, running_app
from tests.factories import PASSWORD, Factory
from tests.live_server import cli_environment, live_server, run_cli


async def test_logs_of_a_working_session_contain_no_secret(
    settings: Settings, factory: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("DEBUG", "json")
    principal = await factory.principal(Role.OPERATOR)
    ticket = await factory.ticket()
    async with running_app(settings) as (_app, client):
        await client.get("/api/v1/me", headers=principal.headers)
        await client.get("/api/v1/me", headers={"Authorization": "Bearer " + principal.token + "x"})
        await client.post(
            f"/api/v1/tickets/{ticket.id}/state",
            json={"state": "DONE", "version": 9},
            headers=principal.headers,
        )
        get_logger("test").error("diagnostic", detail=f"key was {TEST_SECRET_KEY}")
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert '"event": "started"' in output  # logging really was captured
    assert REDACTED in output  # the deliberate leak above was masked
    for secret in (TEST_SECRET_KEY, principal.token, PASSWORD):
        assert secret not in output


def test_the_scrubber_masks_registered_values_inside_any_field() -> None:
    scrubber.register("s3cr3t-value-123")
    event = scrubber(None, "info", {"event": "x", "error": ValueError("bad s3cr3t-value-123!")})
    assert event["error"] == f"bad {REDACTED}!"


def test_unreachable_database_error_does_not_show_its_password(tmp_path: Path) -> None:
    env = cli_environment(
        database_url="postgresql://app:Pa55-w0rd-leak@127.0.0.1:1/nowhere",
        secret_key=TEST_SECRET_KEY,
        data_dir=str(tmp_path),
    )
    result = run_cli("users", "list", env=env)
    assert result.returncode == 1
    assert (
        "cannot use the database postgresql+asyncpg://app:***@127.0.0.1:1/nowhere" in result.stderr
    )
    assert "Pa55-w0rd-leak" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_serve_on_postgres_without_a_key_refuses_with_a_clear_message(tmp_path: Path) -> None:
    env = cli_environment(
        database_url="postgresql://app:pw-9911@127.0.0.1:1/x", data_dir=str(tmp_path)
    )
    result = run_cli("serve", env=env)
    assert result.returncode == 1
    assert "COMMAGENT_SECRET_KEY is not set" in result.stderr
    assert "pw-9911" not in result.stderr + result.stdout


def test_embedded_default_server_generates_its_key_and_never_logs_it(tmp_path: Path) -> None:
    """The out-of-the-box start: no database URL, no key. It migrates itself, warns about the
    generated key (naming the file, not the key) and serves."""
    env = cli_environment(data_dir=str(tmp_path / "data"))
    log = tmp_path / "server.log"
    with live_server(env, log) as base_url:
        assert httpx.get(f"{base_url}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{base_url}/api/v1/me").status_code == 401
    key = (tmp_path / "data" / "secret_key").read_text().strip()
    output = log.read_text()
    assert "secret_key_generated" in output
    assert key not in output


def test_the_google_client_secret_and_the_model_api_key_are_masked_in_logs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(
        _env_file=None,
        google_client_id="id",
        google_client_secret=SecretStr("google-client-secret-xyz"),
        llm_provider="openai",
        llm_base_url="http://127.0.0.1:9/v1",
        llm_api_key=SecretStr("sk-model-key-xyz"),
        llm_model="m",
    )
    google_oauth_client(settings)
    reasoning_model(settings)
    configure_logging("INFO", "json")
    get_logger("test").error("oops", detail="google-client-secret-xyz and sk-model-key-xyz")
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert "google-client-secret-xyz" not in output
    assert "sk-model-key-xyz" not in output
    assert REDACTED in output
