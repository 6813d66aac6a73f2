"""The operator console: server-rendered pages (Jinja) made lively with htmx.

Routers here only read the request, call a service and render; the rules live in `services/`.
"""
