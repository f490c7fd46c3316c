"""``dramatiq workers.main``: the broker and every actor."""

from workers import actors  # noqa: F401 - declares the actors on the broker
from workers.broker import broker  # noqa: F401 - dramatiq finds the global broker
