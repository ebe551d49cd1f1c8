"""The OCI distribution protocol, mirror's trust boundary with registries.

Names and their grammar, limits on what a registry may make mirror read or wait for,
authentication bound to its origin, the wire under every request, the client that speaks
the API, and what a registry says about its rate limits. Every value a registry sends is
parsed here before anything else sees it.

May import: the shared leaves (mirror.errors, mirror.secrets, ...) only.
"""
