"""ECR and the rest of AWS as mirror asks of them: repositories and their settings,
pull-through-cache rules, replication, creation templates, repository policies, and the
IAM policy a config needs. What AWS refuses is recorded, never a stop to a copy.

May import: mirror.config, mirror.oci and the shared leaves.
"""
