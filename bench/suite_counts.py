"""A pytest plugin that counts what some reliability tests try, for docs/reliability.md:

    .venv/bin/python -m pytest tests/properties -p bench.suite_counts
    .venv/bin/python -m pytest tests/reliability/test_provider_faults.py -p bench.suite_counts

(`python -m` puts the working directory on the path, where pytest looks for `bench`.)

It prints, at the end of the run, the schemathesis requests sent (per operation) and the
requests and injected faults the loopback Gmail servers answered. Measurement only: it wraps
two methods to count their calls and changes nothing they do.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from schemathesis.generation.case import Case

from tests.gmail_server import GmailTestServer

cases: Counter[str] = Counter()
gmail = Counter[str]()
_call_and_validate = Case.call_and_validate
_exit = GmailTestServer.__exit__


def _counted_call(self: Case[Any], *args: Any, **kwargs: Any) -> Any:
    cases[f"{self.method.upper()} {self.path}"] += 1
    return _call_and_validate(self, *args, **kwargs)


def _counted_exit(self: GmailTestServer, *exc: object) -> None:
    gmail["servers"] += 1
    gmail["requests"] += len(self.state.requests)
    gmail["faults"] += self.state.faults_delivered
    _exit(self, *exc)


Case.call_and_validate = _counted_call  # type: ignore[method-assign]
GmailTestServer.__exit__ = _counted_exit  # type: ignore[method-assign,assignment]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if cases:
        terminalreporter.write_line(
            f"schemathesis: {sum(cases.values())} requests over {len(cases)} operations "
            f"({min(cases.values())} to {max(cases.values())} per operation)"
        )
    if gmail:
        terminalreporter.write_line(
            f"Gmail test servers: {gmail['servers']}, requests {gmail['requests']}, "
            f"faults injected {gmail['faults']}"
        )
