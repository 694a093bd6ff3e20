"""``evalq policy check [FILE]`` and ``evalq policy explain``: the error policy, as it applies.

``check`` validates the file it is given (the configured one without FILE), whatever else the
environment holds, and prints the effective policy with where each value came from (``shipped``,
``FILE:KEY`` or ``built-in``). ``explain`` says which category and rule an error gets, in which
layer the rule was written, and what the policy then does.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from config.errors import ConfigurationError
from config.policy import CATEGORIES, ENVIRONMENTS, PolicyError, load_policy
from config.policy_errors import key_path
from config.settings import read_settings
from middleware.core.retry_options import RetryOptions
from workers.cli.common import JsonFlag, err, out, print_json

policy_app = typer.Typer(help="Check and explain the error policy.", no_args_is_help=True)

ModuleOption = Annotated[
    list[str] | None,
    typer.Option(
        "--module",
        help="Import this module first (an application's actors, e.g. examples.reports.actors); "
        "repeatable.",
    ),
]

_FIELDS = ("action", "max_retries", "max_attempts", "min_backoff_ms", "max_backoff_ms",
           "jitter", "honor_retry_after", "report")  # fmt: skip


def _environment(given: str | None) -> str:
    """``--env``, else ``EVALQ_ENV`` when it names an environment, else ``development``."""
    value = given or os.environ.get("EVALQ_ENV", "").strip().lower()
    return value if value in ENVIRONMENTS else "development"


@policy_app.command("check")
def policy_check(
    file: Annotated[
        Path | None,
        typer.Argument(help="Policy file to check (default: EVALQ_POLICY_FILE, else shipped)."),
    ] = None,
    env: Annotated[
        str | None, typer.Option(help="Environment to resolve for (default: EVALQ_ENV).")
    ] = None,
    module: ModuleOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Validate a policy file and show what each category does, where each value came from,
    and which actors' own options (Dramatiq's max_retries, backoff, throws, retry_when,
    max_attempts) override it."""
    path = file if file is not None else read_settings().policy_file
    try:
        policy = load_policy(path)
    except PolicyError as error:
        err.print(f"evalq: {error.describe()}", highlight=False, markup=False)
        raise typer.Exit(2) from None
    environment = _environment(env)
    rows: list[dict[str, Any]] = []
    for category in CATEGORIES:
        resolved = policy.resolve(category, actor="", queue="", env=environment)
        origins = policy.origins_of(category, actor="", queue="", env=environment)
        row: dict[str, Any] = {"category": category}
        row.update({field: getattr(resolved, field) for field in _FIELDS})
        row["attempts_allowed"] = resolved.attempts_allowed
        row["origins"] = origins
        rows.append(row)
    document = {
        "file": str(path), "ok": True, "env": environment,
        "overrides": _overrides(policy),
        "layers": _layers(policy), "rules": len(policy.rules),
        "rule_layers": [{"name": r.name, "category": r.category, "layer": r.layer}
                        for r in policy.rules],
        "categories": rows,
        "actors": _actor_overrides(module or []),
    }  # fmt: skip
    if as_json:
        print_json(document)
        return
    _print_check(document)


def _overrides(policy: Any) -> list[dict[str, Any]]:
    """Every value an ``[environments.E]``, ``[queues."Q"]`` or ``[actors.A]`` table sets, with
    its key path and where it came from (narrowest wins: actor > queue > environment > base)."""
    data = policy.document.model_dump(
        exclude_none=True, include={"environments", "queues", "actors"}
    )
    found: list[dict[str, Any]] = []

    def walk(node: Any, loc: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*loc, str(key)))
            return
        path = key_path(loc)
        found.append({"key": path, "value": node, "origin": policy.origin(path)})

    walk(data, ())
    return found


def _actor_overrides(modules: list[str]) -> dict[str, Any]:
    """The actors declared on evalq's broker whose own options change what the policy decides:
    ``{"actors": [{"actor", "queue", "options"}], "note"}``. Loading them needs the configured
    settings and policy: when those are broken, the note says so and the list is empty (the
    file given to ``check`` is still checked)."""
    try:
        import workers

        broker = workers.broker
        for name in modules:
            importlib.import_module(name)
    except ConfigurationError as error:
        return {"actors": [], "note": f"actors not loaded: {error.describe()}"}
    except ImportError as error:
        return {"actors": [], "note": f"actors not loaded: {error}"}
    found = []
    for actor in sorted(broker.actors.values(), key=lambda a: a.actor_name):
        options = RetryOptions.read({}, actor.options, where=f"actor {actor.actor_name}")
        described = options.describe()
        described += [
            f"{name}={actor.options[name]}"
            for name in ("max_attempts", "max_age")
            if actor.options.get(name) is not None
        ]
        if described:
            found.append(
                {"actor": actor.actor_name, "queue": actor.queue_name, "options": described}
            )
    return {"actors": found, "note": None}


def _layers(policy: Any) -> list[str]:
    layers: list[str] = []
    for rule in policy.rules:
        if rule.layer not in layers:
            layers.append(rule.layer)
    if policy.origins:
        for origin in policy.origins.values():
            layer = origin if origin == "shipped" else origin.rsplit(":", 1)[0]
            if layer not in layers:
                layers.append(layer)
    return layers


def _print_check(document: dict[str, Any]) -> None:
    title = (
        f"{document['file']}: ok ({document['rules']} rules; layers: "
        f"{' over '.join(document['layers']) or 'none'}; env {document['env']})"
    )
    table = Table("category", "action", "retries", "attempts", "backoff ms", "retry-after",
                  "report", "set by", title=escape(title))  # fmt: skip
    for row in document["categories"]:
        own = sorted({o for o in row["origins"].values() if o not in ("shipped", "built-in")})
        table.add_row(
            row["category"], row["action"], str(row["max_retries"]), str(row["attempts_allowed"]),
            f"{row['min_backoff_ms']}..{row['max_backoff_ms']}",
            "yes" if row["honor_retry_after"] else "", "yes" if row["report"] else "",
            escape(", ".join(own) or "shipped"),
        )  # fmt: skip
    out.print(table)
    if document["overrides"]:
        title = "overrides (narrowest wins: actor > queue > environment > base)"
        narrower = Table("key", "value", "set by", title=title)
        for row in document["overrides"]:
            narrower.add_row(escape(row["key"]), escape(str(row["value"])), escape(row["origin"]))
        out.print(narrower)
    actors = document["actors"]
    if actors["actors"]:
        own = Table("actor", "queue", "its own options", title="actors whose options override it")
        for row in actors["actors"]:
            own.add_row(
                escape(row["actor"]), escape(row["queue"]), escape("; ".join(row["options"]))
            )
        out.print(own)
    if actors["note"]:
        err.print(escape(actors["note"]), highlight=False)


@policy_app.command("explain")
def policy_explain(
    type_name: Annotated[
        str, typer.Option("--type", help="Exception type, e.g. openai.RateLimitError.")
    ],
    message: Annotated[str, typer.Option(help="The exception's message.")] = "",
    status: Annotated[
        int | None, typer.Option(help="HTTP status of the provider's answer.")
    ] = None,
    code: Annotated[str | None, typer.Option(help="The provider's error code.")] = None,
    actor: Annotated[str, typer.Option(help="Actor the job runs.")] = "run_batch_evaluation",
    queue: Annotated[str | None, typer.Option(help="Queue (default: the actor's).")] = None,
    module: ModuleOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Which category and rule an error gets (and the layer the rule is in), and what the
    policy then does with it for --actor, its own options (max_retries, backoff, throws)
    applied."""
    import workers
    from middleware.core.explain import explain

    broker = workers.broker
    for name in module or []:
        importlib.import_module(name)
    known = broker.actors.get(actor)
    options = (
        RetryOptions.read({}, known.options, where=f"actor {actor}")
        if known is not None
        else RetryOptions()
    )
    resolved_queue = queue or (known.queue_name if known is not None else "default")
    env = workers.settings.env
    document = explain(
        workers.policy, type_name=type_name, message=message, status=status, code=code,
        actor=actor, queue=resolved_queue, env=env, options=options,
    )  # fmt: skip
    own_cap = known.options.get("max_attempts") if known is not None else None
    if own_cap is not None:  # the actor's own cap replaces the policy's, as the worker does
        document["max_attempts"] = int(own_cap)
        document["attempts_allowed"] = (
            min(document["max_retries"] + 1, int(own_cap)) if document["action"] == "retry" else 1
        )
        document["actor_options"].append(f"max_attempts={own_cap}")
    document = {"actor": actor, "queue": resolved_queue, "env": env, **document}
    if as_json:
        print_json(document)
        return
    table = Table(show_header=False)
    for key, value in document.items():
        table.add_row(key, escape(str(value)))
    out.print(table)
