"""Placeholder: being written (see its issue)."""

class GenEvent:  # placeholder
    pass

class EventHandler:  # placeholder
    pass

