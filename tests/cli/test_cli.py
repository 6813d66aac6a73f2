"""The real `commagent` console script against the test database."""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from communication_agent.core.config import Settings
from tests.conftest import TEST_SECRET_KEY, running_app
from tests.factories import PASSWORD
from tests.gmail_server import GmailTestServer
from tests.live_server import COMMAGENT, cli_environment, run_cli
from tests.mail import raw_email


@pytest.fixture
def env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    return cli_environment(
        database_url=settings.database.render_as_string(hide_password=False),
        secret_key=TEST_SECRET_KEY,
        data_dir=str(tmp_path / "cli-data"),
    )


async def test_users_and_tokens_lifecycle(env: dict[str, str], settings: Settings) -> None:
    created = run_cli(
        "users", "create", "Ops@Example.com", "--role", "operator", env=env, stdin=PASSWORD + "\n"
    )
    assert created.returncode == 0, created.stderr
    assert "created operator ops@example.com" in created.stdout

    duplicate = run_cli("users", "create", "ops@example.com", env=env, stdin=PASSWORD + "\n")
    assert duplicate.returncode == 1
    assert "already exists" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr

    weak = run_cli("users", "create", "weak@example.com", env=env, stdin="short\n")
    assert weak.returncode == 1
    assert "too short" in weak.stderr

    bad_role = run_cli(
        "users", "create", "x@example.com", "--role", "superuser", env=env, stdin=PASSWORD
    )
    assert bad_role.returncode == 2
    assert "superuser" in bad_role.stderr

    issued = run_cli("tokens", "create", "ops@example.com", "--name", "ci", env=env)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.startswith("cat_")
    assert "cannot be shown again" in issued.stderr

    listed = run_cli("tokens", "list", env=env)
    assert token[:12] in listed.stdout
    assert token not in listed.stdout

    headers = {"Authorization": f"Bearer {token}"}
    async with running_app(settings) as (_app, client):
        me = await client.get("/api/v1/me", headers=headers)
        assert me.status_code == 200
        assert me.json()["email"] == "ops@example.com"

        token_id = me.json()["token_id"]
        revoked = run_cli("tokens", "revoke", str(token_id), env=env)
        assert revoked.returncode == 0, revoked.stderr
        assert (await client.get("/api/v1/me", headers=headers)).status_code == 401

    users = run_cli("users", "list", env=env)
    assert "ops@example.com" in users.stdout

    unknown = run_cli("tokens", "create", "nobody@example.com", env=env)
    assert unknown.returncode == 1
    assert "No user with email nobody@example.com" in unknown.stderr


def test_schema_commands_and_refusal_of_an_unmigrated_database(tmp_path: Path) -> None:
    env = cli_environment(
        database_url=f"sqlite:///{tmp_path / 'fresh.db'}",
        auto_migrate="false",
        data_dir=str(tmp_path),
    )
    before = run_cli("db", "current", env=env)
    assert before.returncode == 1
    assert "run `commagent db upgrade`" in before.stdout

    refused = run_cli("users", "list", env=env)
    assert refused.returncode == 1
    assert "run `commagent db upgrade`" in refused.stderr

    upgraded = run_cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "schema is current" in upgraded.stdout
    assert run_cli("db", "current", env=env).returncode == 0
    assert run_cli("users", "list", env=env).returncode == 0

    down = run_cli("db", "downgrade", "base", env=env)
    assert down.returncode == 0, down.stderr
    assert "no schema yet" in down.stdout


def test_invalid_configuration_is_reported_not_raised(tmp_path: Path) -> None:
    env = cli_environment(database_url="mysql://u:p@h/d", data_dir=str(tmp_path))
    result = run_cli("users", "list", env=env)
    assert result.returncode == 1
    assert "unsupported backend 'mysql'" in result.stderr
    assert "Traceback" not in result.stderr
    bad_pool = run_cli(
        "users", "list", env=cli_environment(db_pool_size="zero", data_dir=str(tmp_path))
    )
    assert bad_pool.returncode == 1
    assert "db_pool_size" in bad_pool.stderr


def test_python_dash_m_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "communication_agent", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert "users" in result.stdout
    assert "serve" in result.stdout


async def test_demo_login_is_created_once_and_its_token_works(
    env: dict[str, str], settings: Settings
) -> None:
    first = run_cli("demo", "--url", "http://127.0.0.1:9999", env=env)
    assert first.returncode == 0, first.stderr
    second = run_cli("demo", env=env)
    assert second.returncode == 0, second.stderr
    token = next(line.split()[-1] for line in first.stdout.splitlines() if "API token" in line)
    assert f"API token: {token}" in second.stdout  # the same token, not a new one each run
    assert "http://127.0.0.1:9999/api/v1/me" in first.stdout
    async with running_app(settings) as (_app, client):
        me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.json()["role"] == "admin"
    listed = run_cli("tokens", "list", env=env)
    assert listed.stdout.count("demo") == 1


def test_import_prints_its_counts_as_json_on_the_last_line(
    env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "1.eml").write_bytes(raw_email(message_id="<c1@x>"))
    (folder / "2.eml").write_bytes(raw_email(message_id="<c2@x>", in_reply_to="<c1@x>"))
    refused = run_cli("import", str(folder), "--mailbox", "archive", env=env)
    assert refused.returncode == 1
    assert "--address" in refused.stderr
    first = run_cli(
        "import",
        str(folder),
        "--mailbox",
        "archive",
        "--address",
        "help@company.example",
        "--json",
        env=env,
    )
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.strip().splitlines()[-1]) == {
        "fetched": 2, "new_messages": 2, "new_tickets": 1, "threaded": 1,
        "duplicates": 0, "quarantined": 0, "errors": 0, "ignored": 0,
    }  # fmt: skip
    again = run_cli("sync", "archive", "--json", env=env)
    assert json.loads(again.stdout.strip().splitlines()[-1])["duplicates"] == 2
    human = run_cli("sync", env=env)
    assert "duplicates" in human.stdout
    unknown = run_cli("sync", "nope", env=env)
    assert unknown.returncode == 1
    assert "No mailbox named 'nope'; known: archive." in unknown.stderr


def test_connect_gmail_from_a_terminal_with_the_loopback_flow(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The CLI prints the consent URL; a 'browser' follows it to Google and back to the CLI."""
    with GmailTestServer() as gmail:
        gmail_env = {
            **env,
            "COMMAGENT_GMAIL_API_URL": gmail.api_url,
            "COMMAGENT_GOOGLE_AUTH_URL": gmail.auth_url,
            "COMMAGENT_GOOGLE_TOKEN_URL": gmail.token_url,
            "COMMAGENT_GOOGLE_CLIENT_ID": gmail.state.client_id,
            "COMMAGENT_GOOGLE_CLIENT_SECRET": gmail.state.client_secret,
        }
        process = subprocess.Popen(
            [COMMAGENT, "mailboxes", "connect-gmail", "--timeout", "60"],
            env=gmail_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        consent_url = process.stdout.readline().strip()
        assert consent_url.startswith(gmail.auth_url)
        browser = httpx.get(consent_url, follow_redirects=True, timeout=30)  # Google, then the CLI
        assert "Gmail is connected" in browser.text
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert f"connected {gmail.state.address}" in stdout
        listed = run_cli("mailboxes", "list", env=gmail_env)
        assert gmail.state.address in listed.stdout
        assert "ok" in listed.stdout
