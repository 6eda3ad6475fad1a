"""The Django app of bench/orm_apps.py: its models."""
