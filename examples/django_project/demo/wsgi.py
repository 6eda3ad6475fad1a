"""WSGI entry point.

Run from the repository root:
    MEMTRACKER_INTERVAL=0.3 gunicorn --chdir examples/django_project --workers 1 --bind 127.0.0.1:8000 demo.wsgi

Then call http://127.0.0.1:8000/leak a few dozen times and open
http://127.0.0.1:8000/debug/memory (JSON: add ?format=json).
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
application = get_wsgi_application()
