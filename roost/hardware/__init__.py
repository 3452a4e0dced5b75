"""hardware: MicroPython-safe; see DESIGN.md for what lives here."""
