"""The multi-worker store: each worker's snapshot and the track/untrack commands, as
files in a shared directory (workers). The HTTP routes over it are in
:mod:`memtracker_web.endpoint.cluster`.
"""
