"""Configuration: yacs defaults (``defaults.py``) and the strict loader (``loader.py``)."""
from .defaults import CONFIG_VERSION, get_default_config
from .loader import ConfigError, dump_config, load_config, merge_config_file, merge_opts, validate_config

__all__ = ["CONFIG_VERSION", "ConfigError", "dump_config", "get_default_config", "load_config", "merge_config_file",
           "merge_opts", "validate_config"]
