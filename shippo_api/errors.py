"""What a Shippo call can end in, grouped by what the caller does (one tree, like
``notifiers/channel.py``):

| raised | when | the caller |
|---|---|---|
| :class:`ShippoUnauthorized` | 401: the token is wrong, revoked or of another account | alerts the merchant once and pauses calls until the token changes |
| :class:`ShippoUnavailable` | 429 or 5xx after the bounded retries, a timeout, no connection | tries again later (reconciliation) or answers 502 |
| :class:`ShippoRefused` | any other 4xx (404: no such track/webhook; 400: bad carrier) | answers 502 naming the status; not retried |
| :class:`ShippoBadAnswer` | a 2xx whose body is not the JSON object Shippo documents | answers 502 |
"""

from __future__ import annotations


class ShippoError(Exception):
    """A Shippo call failed. ``status`` is Shippo's HTTP status (None: no answer at all)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def described(self) -> str:
        """``Shippo answered 429: …`` / ``Shippo unreachable: …``, for error bodies and logs."""
        return f"Shippo answered {self.status}: {self}" if self.status else f"Shippo unreachable: {self}"


class ShippoUnauthorized(ShippoError):
    """401: the merchant's Shippo API token was refused."""


class ShippoUnavailable(ShippoError):
    """Transient: rate limited, a server error, a timeout or no connection (after the retries)."""


class ShippoRefused(ShippoError):
    """A 4xx other than 401 and 429: this request will not work as it is."""


class ShippoBadAnswer(ShippoError):
    """A success status whose body is not the JSON object expected."""
