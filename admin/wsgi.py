"""gunicorn entry point for the `admin` process."""

from config import load_or_exit
from admin.app import create_app

app = create_app(load_or_exit(require_admin_token=True))
