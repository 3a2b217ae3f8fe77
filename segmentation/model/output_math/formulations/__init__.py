"""Built-in formulations, registered in OM_REGISTRY on import."""
