"""gunicorn entry point for the `web` process."""

from config import load_or_exit
from ingest.app import create_app

app = create_app(load_or_exit(require_signing_key=True))
