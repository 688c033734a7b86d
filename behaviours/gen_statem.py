"""Placeholder: being written (see its issue)."""

class GenStatem:  # placeholder
    pass

