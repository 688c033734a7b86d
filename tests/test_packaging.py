"""The installed package holds every package of the checkout.

`pip install .` installs what setup.cfg's `packages` names; a package left
out (otp.dist once was) breaks `import otp` for every user who installs
instead of running from a checkout. Read from setup.cfg as setuptools reads
it, without building (no network, no wheel)."""

from __future__ import annotations

from pathlib import Path

from setuptools.config.setupcfg import read_configuration

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_of_the_checkout_is_installed() -> None:
    config = read_configuration(str(ROOT / "setup.cfg"))
    installed = set(config["options"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("otp", "behaviours")
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert on_disk <= installed, f"left out of the installed package: {sorted(on_disk - installed)}"
    assert {"otp", "otp.dist", "behaviours"} <= on_disk


def test_typed_marker_ships_with_each_top_package() -> None:
    config = read_configuration(str(ROOT / "setup.cfg"))
    data = config["options"]["package_data"]
    for top in ("otp", "behaviours"):
        assert "py.typed" in data.get(top, []), top
        assert (ROOT / top / "py.typed").exists()
