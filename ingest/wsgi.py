"""gunicorn entry point for the `web` process (settings: ``ingest/gunicorn_conf.py``)."""

from config import load_or_exit
from ingest.app import create_app
from ingest.deadline import BodyDeadline

app = create_app(load_or_exit(require_signing_key=True, require_encryption_keys=True))
app.wsgi_app = BodyDeadline(app.wsgi_app)  # type: ignore[method-assign]
