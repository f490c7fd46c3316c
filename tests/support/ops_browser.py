"""The /ops dashboard in a browser (Playwright), signed in with the admin token."""

from __future__ import annotations

from typing import Any


def signed_in_ops_page(
    browser: Any, admin_url: str, token: str, *, height: int = 768
) -> tuple[Any, list[str]]:
    """A new page of its own context (1366 × ``height``) on ``{admin_url}/ops``, signed in
    through the login form, and the list its uncaught page errors are collected in."""
    page = browser.new_context(viewport={"width": 1366, "height": height}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{admin_url}/ops/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{admin_url}/ops")
    return page, errors
