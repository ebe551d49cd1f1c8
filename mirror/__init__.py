"""mirror: keep private registry copies of upstream base images in sync.

The version is written here and nowhere else: pyproject.toml reads it for the package
metadata, and `mirror --version` prints it (docs/release.md).
"""

__version__ = "0.2.0"
