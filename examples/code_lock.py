"""The code lock of OTP's gen_statem user's guide, as a GenStatem.

A door with a keypad. It is locked; typing the right code unlocks it; it
locks itself again after a while (a *state timeout*). Buttons pressed while
the door is open are *postponed*: they are retried once it is locked again.
Button presses are a "down" and an "up" cast; a full press becomes an
*inserted event* (`NextEvent("internal", ("button", digit))`), handled by the
state functions. Locking and unlocking happen in *state enter calls*, so no
transition can forget them.

The door tells an observer (here the main program) when it locks and
unlocks; the main program prints what it sees.

    python examples/code_lock.py
"""

from __future__ import annotations

from typing import Any

import _path  # noqa: F401

import otp
from behaviours import GenStatem, gen_statem
from behaviours.gen_statem import (
    Call,
    KeepState,
    KeepStateAndData,
    NextEvent,
    NextState,
    Postpone,
    ReplyTo,
    StateTimeout,
)


class CodeLock(GenStatem):
    callback_mode = "state_functions"
    state_enter = True

    def init(
        self,
        code: list[int],
        observer: otp.Pid,
        open_for: float = 10.0,
        forget_after: float = 30.0,
    ) -> Any:
        # Trap exits: when the parent (a supervisor) stops us, terminate runs
        # and the door is left locked.
        otp.trap_exit(True)
        self.observer = observer
        data = {
            "code": code,
            "length": len(code),
            "buttons": [],
            "open_for": open_for,
            "forget_after": forget_after,
        }
        return "locked", data

    # -- the states

    def locked(self, event_type: Any, content: Any, data: Any) -> Any:
        match event_type, content:
            case "enter", _old_state:
                self.do_lock()
                return KeepState({**data, "buttons": []})
            case "state_timeout", "button":
                # An incomplete code is forgotten after a while.
                return KeepState({**data, "buttons": []})
            case "internal", ("button", button):
                buttons = [*data["buttons"], button][-data["length"] :]
                if buttons == data["code"]:
                    return NextState("open", data)
                # Incomplete or wrong: keep typing (restarts the timeout).
                return KeepState(
                    {**data, "buttons": buttons},
                    [StateTimeout(data["forget_after"], "button")],
                )
        return self.handle_common(event_type, content, data)

    def open(self, event_type: Any, content: Any, data: Any) -> Any:
        match event_type, content:
            case "enter", _old_state:
                self.do_unlock()
                return KeepStateAndData([StateTimeout(data["open_for"], "lock")])
            case "state_timeout", "lock":
                return NextState("locked", data)
            case "internal", ("button", _):
                # Not now: retried when the state changes (back to locked).
                return KeepStateAndData([Postpone()])
        return self.handle_common(event_type, content, data)

    def handle_common(self, event_type: Any, content: Any, data: Any) -> Any:
        """What every state does (OTP's ?HANDLE_COMMON)."""
        match event_type, content:
            case "cast", ("down", button):
                return KeepState({**data, "pressed": button})
            case "cast", ("up", button):
                if data.get("pressed") == button:
                    rest = {k: v for k, v in data.items() if k != "pressed"}
                    return KeepState(rest, [NextEvent("internal", ("button", button))])
                return KeepStateAndData()
            case Call(from_), "code_length":
                return KeepStateAndData([ReplyTo(from_, data["length"])])
        return KeepStateAndData()

    def terminate(self, reason: Any, state: Any, data: Any) -> None:
        if state != "locked":
            self.do_lock()

    # -- the hardware

    def do_lock(self) -> None:
        otp.send(self.observer, ("door", "locked"))

    def do_unlock(self) -> None:
        otp.send(self.observer, ("door", "unlocked"))


# ----------------------------------------------------------------- the API


def button(door: Any, digit: int) -> None:
    gen_statem.cast(door, ("down", digit))
    gen_statem.cast(door, ("up", digit))


def code_length(door: Any) -> int:
    return gen_statem.call(door, "code_length")  # type: ignore[no-any-return]


def await_door() -> str:
    """The next lock/unlock notification from the door."""
    msg = otp.receive(lambda m: type(m) is tuple and m[:1] == ("door",), timeout=10)
    return msg[1]  # type: ignore[no-any-return]


def main() -> None:
    door = CodeLock.start_link([1, 2, 3, 4], otp.self_pid(), open_for=0.5, name="code_lock")
    print(f"Door started; the code has {code_length('code_lock')} digits")
    print(f"Door {await_door()}")  # the enter call of the initial state

    print("Typing 9 1 2 3 4 (a wrong digit, then the code)")
    for digit in (9, 1, 2, 3, 4):
        button("code_lock", digit)
    print(f"Door {await_door()}")

    print("Typing 7 while it is open: postponed until it locks")
    button("code_lock", 7)
    print(f"Door {await_door()} again by its state timeout")

    # The call is answered after the postponed 7 has been handled in locked.
    code_length("code_lock")
    state, data = otp.debug.get_state("code_lock")
    print(f"State {state!r}, buttons typed so far {data['buttons']}")

    gen_statem.stop(door)
    print("Door stopped")


if __name__ == "__main__":
    main()
