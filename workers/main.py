"""``dramatiq workers.main``: the worker process's wiring, and the one import with effects.

dramatiq imports this module in every worker process and then runs its global broker: so
here the settings are read, the runtime set, the broker built and the actors bound to it."""

from config import load_or_exit
from workers.actors import bind
from workers.broker import build_broker
from workers.runtime import configure

settings = load_or_exit(
    require_signing_key=True
)  # workers sign unsubscribe links: refuse to start without the key
configure(settings)
broker = bind(build_broker(settings))
