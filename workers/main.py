"""``dramatiq workers.main``: the broker and every actor."""

from config import load_or_exit
from workers import actors  # noqa: F401 - declares the actors on the broker
from workers.broker import broker  # noqa: F401 - dramatiq finds the global broker

load_or_exit(require_signing_key=True)  # workers sign unsubscribe links: refuse to start without the key
