"""Configuration: yacs defaults (``defaults.py``) and the strict loader (``loader.py``)."""
from .defaults import CONFIG_VERSION, get_default_config
from .loader import ConfigError, load_config, merge_config_file, merge_opts

__all__ = ["CONFIG_VERSION", "ConfigError", "get_default_config", "load_config", "merge_config_file", "merge_opts"]
