"""Schemathesis over our own OpenAPI document, against the real server over HTTP, with an
authenticated client: no 5xx, and no response that breaks the schema the API itself publishes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.core.errors import InvalidSchema
from schemathesis.core.result import Err, Ok
from schemathesis.generation.case import Case
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from communication_agent.core.config import Settings
from tests.conftest import TEST_SECRET_KEY
from tests.live_server import cli_environment, live_server, run_cli

EXAMPLES_PER_OPERATION = 25
QUESTION = (
    b"From: Ana <ana@example.org>\r\nTo: help@company.example\r\nSubject: Refund for order 7\r\n"
    b"Message-ID: <q1@example.org>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\n"
    b"I was charged twice for order 7. Please refund one.\r\n"
)


def _ok(result: Ok[APIOperation[Any, Any, Any, Any]] | Err[InvalidSchema]) -> Any:
    assert isinstance(result, Ok), (
        f"the document has an operation schemathesis cannot read: {result}"
    )
    return result.ok()


def test_no_operation_answers_5xx_or_off_its_own_schema(settings: Settings, tmp_path: Path) -> None:
    env = cli_environment(
        database_url=settings.database.render_as_string(hide_password=False),
        secret_key=TEST_SECRET_KEY,
        data_dir=str(tmp_path / "data"),
        reasoning_enabled="false",
        log_level="WARNING",
        # Gmail configured, with Google's addresses on a closed loopback port: the OAuth
        # routes answer as in production, and nothing can leave the machine.
        google_client_id="fuzz-client",
        google_client_secret="fuzz-secret",
        google_auth_url="http://127.0.0.1:9/auth",
        google_token_url="http://127.0.0.1:9/token",
        gmail_api_url="http://127.0.0.1:9/gmail/v1",
        # The fuzzer creates webhook endpoints with made-up URLs: nothing may ever post to one.
        webhook_interval_seconds="3600",
    )
    created = run_cli("users", "create", "admin@company.example", "--role", "admin",
                      stdin="fuzzing-password-1234\n", env=env)  # fmt: skip
    assert created.returncode == 0, created.stderr
    issued = run_cli("tokens", "create", "admin@company.example", env=env)
    assert issued.returncode == 0, issued.stderr
    auth = {"Authorization": f"Bearer {issued.stdout.strip().splitlines()[-1]}"}
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "q1.eml").write_bytes(QUESTION)
    imported = run_cli("import", str(inbox), "--mailbox", "help", "--address",
                       "help@company.example", env=env)  # fmt: skip
    assert imported.returncode == 0, imported.stderr

    with live_server(env, tmp_path / "server.log") as base_url:
        document = httpx.get(f"{base_url}/openapi.json", headers=auth, timeout=10).json()
        schema = schemathesis.openapi.from_dict(document)
        operations = [_ok(result) for result in schema.get_all_operations()]
        assert len(operations) >= 20
        tried = 0
        for operation in operations:

            @hypothesis_settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,  # the same inputs every run: a failure reproduces
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy())
            def call(case: Case[Any]) -> None:
                nonlocal tried
                tried += 1
                # Every check but "schema-valid input is accepted": a request can fit the
                # schema and still name a user who does not exist, or carry a cursor we did
                # not issue; those get a 422 `invalid_input` that says so. What must not happen
                # is a `validation_error` on input the published schema allows: that means
                # the schema lies to clients.
                response = case.call_and_validate(
                    base_url=base_url,
                    headers=auth,
                    excluded_checks=[positive_data_acceptance],
                    allow_redirects=False,
                )
                if response.status_code == 422:
                    code = response.json()["error"]["code"]
                    assert code != "validation_error", (case.path, case.query, response.text)

            call()
        assert tried >= len(operations)
    log = (tmp_path / "server.log").read_text()
    assert "unhandled_error" not in log
