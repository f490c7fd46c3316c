"""Admin pages in a browser (Playwright): a page that collects its errors, and the /ops dashboard
signed in with the admin token."""

from __future__ import annotations

from typing import Any


def watched_page(browser: Any, *, height: int = 768) -> tuple[Any, list[str]]:
    """A new page of its own context (1366 × ``height``; ``page.context.close()`` ends it), and
    the list its uncaught page errors are collected in."""
    page = browser.new_context(viewport={"width": 1366, "height": height}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page, errors


def signed_in_ops_page(
    browser: Any, admin_url: str, token: str, *, height: int = 768
) -> tuple[Any, list[str]]:
    """A new page of its own context (1366 × ``height``) on ``{admin_url}/ops``, signed in
    through the login form, and the list its uncaught page errors are collected in."""
    page, errors = watched_page(browser, height=height)
    page.goto(f"{admin_url}/ops/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{admin_url}/ops")
    return page, errors
