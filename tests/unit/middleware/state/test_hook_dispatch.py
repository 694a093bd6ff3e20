"""Hooks reach exactly the middleware Dramatiq's own dispatch would act on, in its order, with its
handling of errors; middleware added later are seen. Nothing here connects."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
import pytest
from dramatiq.middleware import Middleware, SkipMessage

from middleware.state.hook_dispatch import HookDispatch


class _Broker(HookDispatch, dramatiq.Broker):
    pass


def _logged(calls: list[str]) -> list[Middleware]:
    class Enqueues(Middleware):
        def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
            calls.append("Enqueues.before_enqueue")

        def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
            calls.append("Enqueues.after_enqueue")

    class Acks(Middleware):
        def after_ack(self, broker: Any, message: Any) -> None:
            calls.append("Acks.after_ack")

    class Both(Enqueues, Acks):
        def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
            calls.append("Both.before_enqueue")

    return [Enqueues(), Middleware(), Acks(), Both()]


def _emit_all(broker: dramatiq.Broker) -> None:
    broker.emit_before("enqueue", "message", None)
    broker.emit_after("enqueue", "message", None)
    broker.emit_before("ack", "message")
    broker.emit_after("ack", "message")
    broker.emit_after("nack", "message")


def test_the_calls_and_their_order_are_dramatiqs() -> None:
    theirs: list[str] = []
    ours: list[str] = []
    _emit_all(dramatiq.Broker(middleware=_logged(theirs)))
    _emit_all(_Broker(middleware=_logged(ours)))
    assert ours == theirs == [
        "Enqueues.before_enqueue", "Both.before_enqueue",
        "Enqueues.after_enqueue", "Enqueues.after_enqueue",  # Both's, then the first one's
        "Acks.after_ack", "Acks.after_ack",
    ]  # fmt: skip


def test_only_the_middleware_that_define_a_hook_are_called() -> None:
    broker = _Broker(middleware=_logged([]))
    assert [type(m).__name__ for m in broker._defining("after_ack")] == ["Acks", "Both"]
    assert broker._defining("before_ack") == ()


def test_a_middleware_added_after_a_hook_ran_is_called_the_next_time() -> None:
    calls: list[str] = []
    broker = _Broker(middleware=[])
    broker.emit_after("ack", "message")
    for middleware in _logged(calls):
        broker.add_middleware(middleware)
    broker.emit_after("ack", "message")
    assert calls == ["Acks.after_ack", "Acks.after_ack"]


def test_a_hook_set_on_the_instance_is_called() -> None:
    calls: list[str] = []
    middleware = Middleware()
    middleware.after_nack = lambda broker, message: calls.append(message)  # type: ignore[method-assign]
    _Broker(middleware=[middleware]).emit_after("nack", "message")
    assert calls == ["message"]


class _Fails(Middleware):
    def before_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        raise RuntimeError("hook broke")

    def after_enqueue(self, broker: Any, message: Any, delay: Any) -> None:
        raise RuntimeError("hook broke")


def test_a_failing_hook_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    broker = _Broker(middleware=[_Fails(), *_logged(calls)])
    with caplog.at_level(logging.CRITICAL):
        broker.emit_before("enqueue", "message", None)
        broker.emit_after("enqueue", "message", None)
    assert calls == ["Enqueues.before_enqueue", "Both.before_enqueue",
                     "Enqueues.after_enqueue", "Enqueues.after_enqueue"]  # fmt: skip
    failures = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert [r.getMessage() for r in failures] == [
        f"Unexpected failure in before_enqueue of {broker.middleware[0]!r}.",
        f"Unexpected failure in after_enqueue of {broker.middleware[0]!r}.",
    ]


def test_a_middleware_error_from_a_before_hook_reaches_the_caller() -> None:
    class Skips(Middleware):
        def before_process_message(self, broker: Any, message: Any) -> None:
            raise SkipMessage()

    with pytest.raises(SkipMessage):
        _Broker(middleware=[Skips()]).emit_before("process_message", "message")
