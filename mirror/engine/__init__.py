"""One pass: what the config stands for, checked for free, and copied where it changed.

Selection of tags, the upstream's budgets, the scheduler that lets one registry wait for
its quota while others go on, the image, blob and artifact copiers, replicas, and the
report of what happened. `wiring` builds the clients every other part is handed.

May import: mirror.aws, mirror.config, mirror.oci and the shared leaves.
"""
