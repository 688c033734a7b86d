"""A class both nodes of the struct tests import: registered as a struct at
import time, before either node starts (see otp.dist.register_struct)."""

from __future__ import annotations

from dataclasses import dataclass

from otp.dist import register_struct


@dataclass
class Point:
    x: int
    y: int


register_struct(Point)
