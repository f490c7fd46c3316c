"""gunicorn entry point for the `admin` process."""

from admin.app import create_app
from config import load_or_exit

app = create_app(load_or_exit(require_admin_token=True, require_encryption_keys=True))
