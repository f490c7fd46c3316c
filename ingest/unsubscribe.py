"""Email unsubscribe on `web`: the signed link from every customer email.

``GET`` shows a confirmation page (mail scanners prefetch links: a GET must not
unsubscribe anybody); ``POST`` records the opt-out — that is also what the one-click
``List-Unsubscribe-Post`` header makes mail clients do.
"""

from __future__ import annotations

from html import escape

from flask import Blueprint, Response

from domain.unsubscribe import read_token
from ingest.errors import BadToken
from ingest.queue import hand_off
from ingest.services import services
from workers.actors import record_email_opt_out

unsubscribe = Blueprint("unsubscribe", __name__)

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}
button{{font-size:1rem;padding:.6rem 1.2rem;border-radius:6px;border:1px solid #444;background:#fff;cursor:pointer}}</style>
</head><body><h1>{title}</h1><p>{text}</p>{form}</body></html>"""


def _address(slug: str, token: str) -> tuple[str, str]:
    s = services()
    merchant = s.merchants.require(slug)
    address = read_token(s.settings.unsubscribe_key, slug, token)
    if address is None:
        raise BadToken("this unsubscribe link is not valid")
    return merchant.name, address


@unsubscribe.get("/unsubscribe/<slug>/<token>")
def confirm(slug: str, token: str) -> Response:
    name, address = _address(slug, token)
    form = '<form method="post"><button type="submit">Unsubscribe</button></form>'
    text = f"Stop shipping emails from {escape(name)} to {escape(address)}?"
    return Response(PAGE.format(title="Unsubscribe", text=text, form=form), mimetype="text/html")


@unsubscribe.post("/unsubscribe/<slug>/<token>")
def confirmed(slug: str, token: str) -> Response:
    name, address = _address(slug, token)
    hand_off(record_email_opt_out, slug, address)
    text = f"{escape(address)} will no longer receive shipping emails from {escape(name)}."
    return Response(PAGE.format(title="You are unsubscribed", text=text, form=""), mimetype="text/html")
