"""An application that sets up its own Sentry client, then uses evalq, for
``dramatiq tests.support.host_app tests.support.failing_actors``: evalq must keep the host's
client (its DSN, release and ``before_send``) and report through it."""

from __future__ import annotations

import os
from typing import Any

import sentry_sdk

RELEASE = "host-app@1.2.3"


def _host_before_send(event: Any, hint: Any) -> Any:
    event.setdefault("tags", {})["host_before_send"] = "yes"
    return event


sentry_sdk.init(
    dsn=os.environ["HOST_SENTRY_DSN"],
    release=RELEASE,
    before_send=_host_before_send,
    auto_enabling_integrations=False,
    default_integrations=False,
)
HOST_CLIENT = sentry_sdk.get_client()

import workers  # noqa: E402  (the host's Sentry comes first, as in an application)
import workers.client  # noqa: E402

broker = workers.broker  # what `dramatiq tests.support.host_app` runs on
assert sentry_sdk.get_client() is HOST_CLIENT, "importing evalq replaced the host's client"
