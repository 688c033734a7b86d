"""Placeholder: being written (see its issue)."""

class ChildSpec:  # placeholder
    pass

class SupFlags:  # placeholder
    pass

class Supervisor:  # placeholder
    pass

