"""Rendering a snapshot: JSON text (jsontext), the HTML page (page), the terminal
report (report) and Prometheus metrics (prometheus). Nothing is imported here:
``prometheus`` needs prometheus_client, which the other renderers do not.
"""
