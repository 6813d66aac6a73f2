"""Implementations of the ports that services depend on: mail providers (and, later, models).

Only this package imports provider SDKs and HTTP clients; services see the protocols in
`mail_provider.py` and receive concrete objects from a factory at the entry points.
"""
