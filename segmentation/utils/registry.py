"""A name -> object registry with a stated contract, shared by every extension point."""


class Registry:
    """Maps names to objects (classes or functions) registered with ``@REGISTRY.register("name")``.

    Each registry states in ``contract`` what a registered object must accept and return. A duplicate name is an
    error; an unknown name lists the registered ones and the config key that selects them.
    """

    def __init__(self, name, contract, config_key=None):
        self.name = name
        self.contract = contract
        self.config_key = config_key
        self._items = {}

    def register(self, name=None):
        def deco(obj):
            key = name or obj.__name__
            if key in self._items:
                raise KeyError(f"'{key}' is already registered in {self.name} (by {self._items[key]!r}).")
            self._items[key] = obj
            return obj
        return deco

    def get(self, name):
        if name not in self._items:
            where = f" (set by {self.config_key})" if self.config_key else ""
            raise KeyError(f"Unknown {self.name} entry '{name}'{where}. Registered: {', '.join(sorted(self._items))}.")
        return self._items[name]

    def names(self):
        return sorted(self._items)

    def __contains__(self, name):
        return name in self._items

    def __repr__(self):
        return f"Registry({self.name}: {', '.join(self.names())})"
