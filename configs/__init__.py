"""The shipped YAML configs; installed as the package ``segmentation.configs`` (see pyproject.toml), where
``segmentation.config.load_config`` finds them by name."""
