"""The mail the end-to-end tests import: a few customer emails, one per test, and one hostile.

Each test works on its own ticket, so the tests do not depend on their order. The customers write
long enough, and without "thanks", that the offline model sees questions needing a reply (and
drafts one) rather than closing the ticket by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.mail import raw_email


@dataclass(frozen=True)
class Story:
    """One customer email, and whether the tests need the model's draft on its ticket."""

    key: str
    sender: str
    sender_name: str
    subject: str
    body: str
    html: str | None = None
    needs_draft: bool = True

    @property
    def message_id(self) -> str:
        return f"<e2e-{self.key}@mail.example.net>"


# What a payload does if it ever runs: leave a mark the tests look for, and call home.
def _payload(canary: str, name: str) -> str:
    return (
        f"window.__pwned='{name}';document.title='PWNED';fetch('{canary}/{name}');alert('{name}')"
    )


HOSTILE_SUBJECT = (
    "Refund <script>window.__pwned='subject'</script><img src=x onerror=alert('subject')>"
)
HOSTILE_NAME = "<img src=x onerror=alert('from')><script>alert('name')</script>"


def _hostile_html(canary: str, images: str) -> str:
    def run(name: str) -> str:
        return _payload(canary, name)

    return f"""<html><head>
<meta http-equiv="refresh" content="0;url={canary}/meta-refresh">
<style>body {{ background: url({canary}/style-element) }}</style>
<script>{run("script")}</script>
</head><body>
<p>Hello, I was charged twice for invoice 8812. Please refund the second payment.</p>
<img src="x" onerror="{run("img-onerror")}">
<svg onload="{run("svg-onload")}"><circle r="4"></circle></svg>
<p><a id="receipt" href="javascript:{run("javascript-link")}">Open my receipt</a></p>
<div style="background:url(javascript:{run("css-javascript")})">The receipt is attached.</div>
<div style="background-image:url({images}/css-background.png)">Account 55-1200-7</div>
<iframe srcdoc="<script>{run("srcdoc")}</script>"></iframe>
<form action="{canary}/form"><button>Confirm refund</button></form>
<p><img src="{images}/pixel.png" alt="" width="1" height="1"></p>
<p>Kind regards,<br>Eve</p>
</body></html>"""


def stories(canary: str, images: str) -> list[Story]:
    """The mail folder's emails; `canary` and `images` are the loopback servers' base URLs."""
    return [
        Story(
            key="reply",
            sender="maria.lopez@example.net",
            sender_name="Maria Lopez",
            subject="Order 4417 arrived with a cracked lid",
            body=(
                "Hello,\n\nmy order 4417 (the stainless steel kettle) arrived this morning and "
                "the lid is cracked right across the hinge. The box looked fine, so it must have "
                "happened before packing.\n\nCould you send me a replacement lid or a new kettle? "
                "I can send photos if you need them.\n\nKind regards,\nMaria Lopez\n"
            ),
        ),
        Story(
            key="hostile",
            sender="eve@attacker.example",
            sender_name=HOSTILE_NAME,
            subject=HOSTILE_SUBJECT,
            body=(
                "Hello, I was charged twice for invoice 8812. <script>alert('body')</script>\n"
                f'<img src=x onerror="{_payload(canary, "text-part")}">\n\nKind regards,\nEve\n'
            ),
            html=_hostile_html(canary, images),
            needs_draft=False,
        ),
        Story(
            key="csrf",
            sender="tom.becker@example.com",
            sender_name="Tom Becker",
            subject="Password reset email never arrives",
            body=(
                "Hi,\n\nI requested a password reset three times today but the email never "
                "arrives, not even in the spam folder. My account is tom.becker@example.com. "
                "Can you reset it for me or tell me what else I can try?\n\nBest,\nTom\n"
            ),
        ),
        Story(
            key="viewer",
            sender="anna.schmidt@firma.example",
            sender_name="Anna Schmidt",
            subject="Invoice INV-2291 lists the wrong VAT number",
            body=(
                "Hello,\n\nour invoice INV-2291 from last week shows the VAT number DE118812345, "
                "but ours is DE298765432. Our accounting cannot book it like this. Could you "
                "send a corrected invoice?\n\nBest regards,\nAnna Schmidt\nFirma GmbH\n"
            ),
        ),
        Story(
            key="keyboard",
            sender="liam.obrien@example.org",
            sender_name="Liam O'Brien",
            subject="How do I export all my projects to CSV?",
            body=(
                "Hi there,\n\nis there a way to export all of my projects to a CSV file at "
                "once? I can only find the export button on a single project, and we have "
                "about forty of them. Our auditor needs the list by Friday.\n\nCheers,\nLiam\n"
            ),
            needs_draft=False,
        ),
        Story(
            key="move",
            sender="noor.haddad@example.com",
            sender_name="Noor Haddad",
            subject="Change the delivery address for order 5120",
            body=(
                "Hello,\n\nI moved last weekend and order 5120 is still going to my old "
                "address. Could you change the delivery address to Keizersgracht 12, 1015 CS "
                "Amsterdam before it ships?\n\nRegards,\nNoor Haddad\n"
            ),
            needs_draft=False,
        ),
    ]


def write_mail_folder(folder: Path, mail: list[Story]) -> None:
    """One `.eml` file per story, as a mail client would export them."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, story in enumerate(mail, start=1):
        raw = raw_email(
            sender=story.sender,
            sender_name=story.sender_name,
            to="support@example.com",
            subject=story.subject,
            body=story.body,
            html=story.html,
            message_id=story.message_id,
            minutes=number,
        )
        (folder / f"{number:02d}-{story.key}.eml").write_bytes(raw)
