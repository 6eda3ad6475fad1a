"""The adapters around the endpoint: asgi, wsgi, django, flask, fastapi and gunicorn's
hooks. Users import them by their public paths (``memtracker_web.asgi``,
``memtracker_web.django.MemoryTrackerMiddleware``...); nothing is imported here,
since each needs its own framework.
"""
