"""mirror: keep private registry copies of upstream base images in sync."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mirror")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
