"""gateway: CPython services and the roost command line."""
