"""Config: the YAML schema (model) and its loader with line-numbered errors (load), the
tag rules' meaning (selection), and the AWS rules a config is checked against offline
(lifecycle policies, the upstreams ECR can cache).

May import: mirror.oci and the shared leaves.
"""

from mirror.config.load import (
    DEFAULT_CONFIG_PATH,
    Config,
    ImageEntry,
    check_config,
    image_key,
    listed_images,
    load_config,
    resolve_config_source,
    with_added_images,
    with_one_image,
)

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "Config",
    "ImageEntry",
    "check_config",
    "image_key",
    "listed_images",
    "load_config",
    "resolve_config_source",
    "with_added_images",
    "with_one_image",
]
