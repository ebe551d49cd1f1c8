"""mirror as a service: the daemon's schedule, its health server and liveness, the
container's health check, Prometheus and EMF metrics, and the pass summary event.

May import: mirror.include, mirror.prune, mirror.engine, mirror.aws, mirror.config,
mirror.oci and the shared leaves.
"""
