"""Run the loopback Gmail test server in its own process, filled with the benchmark mix.

Prints one JSON line (`api_url`, `token_url`, client id/secret, a refresh token) once ready, then
serves until its standard input closes. Its memory is its own, so the syncing process's peak RSS
measures only the sync.
"""

from __future__ import annotations

import argparse
import json
import sys

from bench.mail_mix import messages
from tests.gmail_server import GmailTestServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, required=True)
    args = parser.parse_args()
    with GmailTestServer() as gmail:
        for raw, thread_id, labels in messages(args.messages):
            gmail.add_message(raw, thread_id=thread_id, labels=labels)
        ready = {
            "api_url": gmail.api_url,
            "token_url": gmail.token_url,
            "client_id": gmail.state.client_id,
            "client_secret": gmail.state.client_secret,
            "refresh_token": gmail.issue_refresh_token(),
            "address": gmail.state.address,
        }
        print(json.dumps(ready), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
