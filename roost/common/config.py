"""Config classes: defaults as class attributes (with unit and reason beside each), overrides
checked by name and type, so a typo is one clear sentence rather than a silent default."""


def apply_overrides(obj, cls, overrides, what):
    """Set each override on obj after checking the name exists on cls and the type fits."""
    for name in sorted(overrides):
        value = overrides[name]
        if name.startswith("_") or not hasattr(cls, name):
            raise ValueError("unknown %s option: %s" % (what, name))
        default = getattr(cls, name)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValueError("%s option %s must be true or false" % (what, name))
        elif isinstance(default, int) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("%s option %s must be a whole number" % (what, name))
        elif isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError("%s option %s must be a number" % (what, name))
            value = float(value)
        setattr(obj, name, value)


def options_of(cls):
    """Sorted public option names of a config class (for --help and docs)."""
    return sorted(n for n in dir(cls) if not n.startswith("_") and not callable(getattr(cls, n)))
