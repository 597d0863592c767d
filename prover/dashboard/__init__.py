"""The web dashboard on the event index: insurer, DAO, registry and relay views.

Server-rendered (FastAPI + Jinja2), refreshed in place by htmx polling; no patient data, no
model output, only decisions. Loopback-only unless a token file is configured
(:mod:`prover.dashboard.auth`).
"""
