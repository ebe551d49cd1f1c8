"""The CodeBuild include: a buildspec fragment or a POSIX script that pulls the mirrored
images and tags them with the names Dockerfiles use; the Dockerfile scan it filters by, the
lock that pins every reference, the one way text becomes shell, and publishing it.

May import: mirror.engine, mirror.aws, mirror.config, mirror.oci and the shared leaves.
"""
