#!/usr/bin/env python
"""Django's command-line utility for the example; serve it with gunicorn (see demo/wsgi.py):

MEMTRACKER_INTERVAL=0.3 gunicorn --chdir examples/django_project --workers 1 --bind 127.0.0.1:8000 demo.wsgi
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
