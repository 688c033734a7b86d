"""Two applications, one depending on the other, each with its environment.

```
inventory (Application)              shop (Application, needs inventory)
└── InventorySup                     └── ShopSup
    └── stock   GenServer                └── cashier  GenServer
                (env: initial stock)                  (env: greeting; calls stock)
```

`otp.application.start(Shop)` starts inventory first (a dependency), then
shop; `stop(Shop)` stops shop, then inventory. Every process reads its
application's environment with `otp.application.get_env`, in its own OS
process.

Run it as a service (SIGTERM or Ctrl-C stops shop, then inventory):

    otp run examples.app_example:Shop      # from the repository root

or run this file, which starts both, buys something, changes the
environment, and stops them:

    python examples/app_example.py
"""

from __future__ import annotations

from typing import Any

try:
    import _path  # noqa: F401 - run as a script from a checkout
except ImportError:
    pass  # imported as examples.app_example (otp run), or installed

import otp
from behaviours import Application, GenServer, Reply, Supervisor, SupFlags, gen_server


class Stock(GenServer):
    """How many of each item are left."""

    def init(self) -> dict[str, int]:
        return dict(otp.application.get_env("inventory", "initial_stock", {}))

    def handle_call(self, request: Any, from_: Any, stock: dict[str, int]) -> Any:
        match request:
            case ("take", item):
                if stock.get(item, 0) <= 0:
                    return Reply(False, stock)
                return Reply(True, {**stock, item: stock[item] - 1})
            case "stock":
                return Reply(stock, stock)


class InventorySup(Supervisor):
    def init(self) -> Any:
        return SupFlags(strategy="one_for_one"), [Stock.child_spec(id="stock", name="stock")]


class Inventory(Application):
    """The stock of the shop."""

    name = "inventory"
    env = {"initial_stock": {"apple": 2, "pear": 1}}

    def start(self, start_type: str, args: Any) -> Any:
        pid = InventorySup.start_link()
        print("app: inventory started", flush=True)
        return pid

    def stop(self, state: Any) -> None:
        print("app: inventory stopped", flush=True)


class Cashier(GenServer):
    def init(self) -> None:
        return None

    def handle_call(self, request: Any, from_: Any, state: Any) -> Any:
        match request:
            case ("buy", item):
                # Read at each call: set_env changes it for the whole node.
                greeting = otp.application.get_env("shop", "greeting")
                if gen_server.call("stock", ("take", item)):
                    return Reply(f"{greeting} Here is your {item}.", state)
                return Reply(f"{greeting} Sorry, no {item} left.", state)


class ShopSup(Supervisor):
    def init(self) -> Any:
        return SupFlags(strategy="one_for_one"), [Cashier.child_spec(id="cashier", name="cashier")]


class Shop(Application):
    """The shop: a cashier selling from the inventory."""

    name = "shop"
    env = {"greeting": "Hello!"}
    applications = [Inventory]  # started first, stopped last

    def start(self, start_type: str, args: Any) -> Any:
        pid = ShopSup.start_link()
        print("app: shop started", flush=True)
        return pid

    def stop(self, state: Any) -> None:
        print("app: shop stopped", flush=True)


def main() -> None:
    otp.application.start(Shop, env={"greeting": "Welcome!"})
    print("running:", [name for name, _, _ in otp.application.which_applications()])
    print(gen_server.call("cashier", ("buy", "apple")))
    otp.application.set_env("shop", "greeting", "Hi again!")
    print(gen_server.call("cashier", ("buy", "pear")))
    print(gen_server.call("cashier", ("buy", "pear")))
    otp.application.stop(Shop)
    print("running:", otp.application.which_applications())


if __name__ == "__main__":
    main()
