"""The files placed at an ESP32's flash root: ``boot.py`` and ``main.py`` (source, tiny)."""
