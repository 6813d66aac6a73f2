"""Run the loopback Gmail test server in its own process, filled with a benchmark mix.

Prints one JSON line (`api_url`, `token_url`, client id/secret, a refresh token) once ready, then
serves until its standard input closes, and then prints a second line: every message it was
asked to send (`{"sent": [[Message-ID, thread id], ...]}`), so a benchmark can check that each
reply arrived exactly once. Its memory is its own, so the measuring process's peak RSS covers
only the measured work. `bench/gmail_mailbox.py` is the other side.
"""

from __future__ import annotations

import argparse
import email.policy
import json
import sys
from email.parser import BytesParser

from bench.mail_mix import messages, questions
from tests.gmail_server import GmailTestServer, sent_messages

MIXES = {"support": messages, "questions": questions}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--mix", choices=sorted(MIXES), default="support")
    args = parser.parse_args()
    with GmailTestServer() as gmail:
        for raw, thread_id, labels in MIXES[args.mix](args.messages):
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
        headers = BytesParser(policy=email.policy.default)
        sent = [
            [str(headers.parsebytes(m.raw, headersonly=True)["Message-ID"]), m.thread_id]
            for m in sent_messages(gmail)
        ]
        print(json.dumps({"sent": sent}), flush=True)


if __name__ == "__main__":
    main()
