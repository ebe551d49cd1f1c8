"""Config: the YAML schema (model) and its loader with line-numbered errors (load)."""

from mirror.config.load import (
    DEFAULT_CONFIG_PATH,
    Config,
    ImageEntry,
    load_config,
    resolve_config_source,
    with_one_image,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Config",
    "ImageEntry",
    "load_config",
    "resolve_config_source",
    "with_one_image",
]
