"""Put a failed job's exception in an error category, looking at its whole chain.

The chain is the exception, then what it was raised from (``__cause__``), what it was raised while
handling (``__context__``, also under ``raise ... from None``: a wrapper never hides the root
cause) and, for an ExceptionGroup, its members, depth first.

evalq's own failures are classified in code, whatever the policy file says (the built-in
taxonomy): a time limit anywhere in the chain is ``time_limit``, a failure of evalq's own Redis
``store_unavailable`` (``BUILTIN_TAXONOMY``), and
evalq's other failures carry their category (``CategorizedError``: a bad judge answer, an abort,
an invalid payload, an expired job). Then an explicit category on any link (outermost first)
wins; else the first rule in policy order (user rules, then shipped ones) that matches any link,
all of the rule's keys matching that same link; else ``unknown``. A policy file decides what a
category does, never which category evalq's own exceptions are.

Pure: no I/O, no clock (``now`` is passed in), nothing imported to match a class name.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from config.policy import CompiledRule, Policy
from middleware.core.errors import Throttled
from middleware.core.facts import ErrorFacts, facts_of

#: Most links followed in one chain; a longer chain is cut, never walked forever.
MAX_CHAIN = 64
#: Rule name reported for a category the exception carried itself.
EXPLICIT_RULE = "explicit"
UNKNOWN = "unknown"
_MEMO_LIMIT = 1024

#: evalq's own failures that cannot carry a category themselves, classified before any rule:
#: ``(dotted class name, category, rule name)``. Dramatiq's TimeLimitExceeded is raised into the
#: worker thread at any moment, possibly while another error is handled: it wins over that.
BUILTIN_TAXONOMY: tuple[tuple[str, str, str], ...] = (
    ("dramatiq.middleware.time_limit.TimeLimitExceeded", "time_limit", "time_limit"),
    # evalq's own Redis (results, history, rate limits) is not the provider: redis-py's
    # ConnectionError must never pass for a provider's connection error.
    ("redis.exceptions.ConnectionError", "store_unavailable", "redis_unavailable"),
    ("redis.exceptions.TimeoutError", "store_unavailable", "redis_unavailable"),
    ("redis.exceptions.BusyLoadingError", "store_unavailable", "redis_unavailable"),
    ("redis.exceptions.ReadOnlyError", "store_unavailable", "redis_unavailable"),
)
#: The layer ``evalq policy explain`` names for the built-in taxonomy and explicit categories.
BUILTIN_LAYER = "built-in"


@dataclass(frozen=True, slots=True)
class Classification:
    """The category of one failure and why.

    ``rule`` is the matching rule's display name, ``"explicit"`` for a ``CategorizedError`` and
    None for ``unknown``; ``matched`` is the link that decided (None for ``unknown``);
    ``chain_types`` are the dotted class names of the links, outermost first; ``retry_after_s``
    comes from the matched link, else from the first link that has one (seconds).
    """

    category: str
    rule: str | None
    matched: BaseException | None
    root_cause: BaseException
    chain_types: tuple[str, ...]
    retry_after_s: float | None
    forced_action: str | None


def _links(exc: BaseException) -> list[BaseException]:
    """The exceptions one step inward from ``exc``: cause, context, then group members."""
    out: list[BaseException] = []
    cause, context = exc.__cause__, exc.__context__
    if cause is not None:
        out.append(cause)
    if context is not None and context is not cause:
        out.append(context)
    if isinstance(exc, BaseExceptionGroup):
        out.extend(exc.exceptions)
    return out


def exception_chain(exc: BaseException) -> tuple[BaseException, ...]:
    """``exc`` and everything it came from, outermost first (depth first), each once, at most
    ``MAX_CHAIN`` links; cycles are cut."""
    chain: list[BaseException] = []
    seen: set[int] = set()
    stack = [exc]
    while stack and len(chain) < MAX_CHAIN:
        link = stack.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        chain.append(link)
        stack.extend(reversed(_links(link)))
    return tuple(chain)


def root_cause(chain: Sequence[BaseException]) -> BaseException:
    """The innermost exception: from ``chain[0]`` keep taking the first inward link (cause, else
    context, else the first group member) that is in ``chain`` and not yet on the path."""
    if not chain:
        raise ValueError("an exception chain has at least one link")
    allowed = {id(link) for link in chain}
    current = chain[0]
    allowed.discard(id(current))
    while True:
        step = _first_inward(current, allowed)
        if step is None:
            return current
        allowed.discard(id(step))  # a cycle cannot lead back onto the path
        current = step


def declared_cause(exc: BaseException) -> BaseException:
    """The innermost exception below ``exc`` that its raisers declared relevant: follow
    ``__cause__``, and ``__context__`` unless it was suppressed with ``raise ... from None``.

    The root cause of a classified error is taken from the link a rule recognised: an SDK that
    turns a transport error into its own ``raise StatusError(...) from None`` means its error,
    not the transport's, while a wrapper above the recognised link cannot hide it.
    """
    current, seen = exc, {id(exc)}
    while True:
        step = current.__cause__
        if step is None and not current.__suppress_context__:
            step = current.__context__
        if step is None or id(step) in seen:
            return current
        seen.add(id(step))
        current = step


def _first_inward(exc: BaseException, allowed: set[int]) -> BaseException | None:
    cause = exc.__cause__
    if cause is not None and id(cause) in allowed:
        return cause
    context = exc.__context__
    if context is not None and id(context) in allowed:
        return context
    if isinstance(exc, BaseExceptionGroup):
        for member in exc.exceptions:
            if id(member) in allowed:
                return member
    return None


class Classifier:
    """Classifies failures with one policy's rules, whose match plan it builds once.

    Hold one per policy (the error-policy middleware does): ``classify(exc, policy, now=...)``
    builds a new one on every call.

    Parameters:
      policy(Policy): The loaded policy file.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.plan = RulePlan(policy.rules)

    def classify(self, exc: BaseException, *, now: float) -> Classification:
        """Classify ``exc``; ``now`` in epoch seconds dates a Retry-After."""
        chain = exception_chain(exc)
        facts = [facts_of(link, now=now) for link in chain]
        chain_types = tuple(f.types[0] for f in facts)
        cause = root_cause(chain)
        first_retry_after = next(
            (f.retry_after_s for f in facts if f.retry_after_s is not None), None
        )
        explicit: tuple[BaseException, ErrorFacts] | None = None
        for link, fact in zip(chain, facts, strict=True):
            builtin = builtin_category(fact)
            if builtin is not None:  # anywhere in the chain, it beats any explicit category
                return Classification(
                    category=builtin[0],
                    rule=builtin[1],
                    matched=link,
                    root_cause=declared_cause(link),
                    chain_types=chain_types,
                    retry_after_s=None,
                    forced_action=None,
                )
            if explicit is None and fact.explicit_category is not None:
                explicit = (link, fact)
        if explicit is not None:
            link, fact = explicit
            return Classification(
                category=fact.explicit_category or UNKNOWN,
                rule=EXPLICIT_RULE,
                matched=link,
                root_cause=declared_cause(link),
                chain_types=chain_types,
                retry_after_s=_first(fact.retry_after_s, first_retry_after),
                forced_action=fact.forced_action,
            )
        category, rule, index = classify_facts(facts, self.plan)
        matched = chain[index] if index is not None else None
        own = facts[index].retry_after_s if index is not None else None
        return Classification(
            category=category,
            rule=rule,
            matched=matched,
            root_cause=cause if matched is None else declared_cause(matched),
            chain_types=chain_types,
            retry_after_s=_first(own, first_retry_after),
            forced_action=None,
        )


def classify(exc: BaseException, policy: Policy, *, now: float) -> Classification:
    """Classify ``exc`` with ``policy``'s rules; ``now`` in epoch seconds dates a Retry-After.
    (Builds the rules' plan each time: to classify many, hold a ``Classifier``.)"""
    return Classifier(policy).classify(exc, now=now)


#: ``BUILTIN_TAXONOMY`` as ``(class name, its module prefix, category, rule)``, split once.
_BUILTIN_KEYS = tuple(
    (d.rpartition(".")[2], d.rpartition(".")[0], category, rule)
    for d, category, rule in BUILTIN_TAXONOMY
)


def builtin_category(fact: ErrorFacts) -> tuple[str, str] | None:
    """``(category, rule name)`` of a link the built-in taxonomy knows, else None."""
    return _builtin_category_of(fact.types)


@functools.lru_cache(maxsize=1024)
def _builtin_category_of(types: tuple[str, ...]) -> tuple[str, str] | None:
    # A function of the class's ancestry alone: a process meets few classes and each costs a
    # walk of the whole taxonomy, so the answer is kept per ancestry.
    for name, prefix, category, rule in _BUILTIN_KEYS:
        for dotted in types:
            if dotted.endswith(name) and name_matches(prefix, name, dotted):
                return category, rule
    return None


def classify_facts(
    chain: Sequence[ErrorFacts], rules: Sequence[CompiledRule] | RulePlan
) -> tuple[str, str | None, int | None]:
    """``(category, rule name, index of the matching link)`` of the first rule, in order, that
    matches any link; ``("unknown", None, None)`` when none does. Explicit categories are the
    caller's business (``classify`` looks at them first). ``rules`` may be their ``RulePlan``,
    built once (``Classifier.plan``)."""
    plan = rules if isinstance(rules, RulePlan) else RulePlan(rules)
    masks = [plan.candidates(fact) for fact in chain]
    pending = 0
    for mask in masks:
        pending |= mask
    while pending:
        bit = pending & -pending  # lowest set bit: the earliest rule still possible
        rule = plan.rules[bit.bit_length() - 1]
        for index, mask in enumerate(masks):
            if mask & bit and (
                rule.message is None or rule.message.search(chain[index].message) is not None
            ):
                return rule.category, rule.name, index
        pending ^= bit
    return UNKNOWN, None, None


def rule_matches(rule: CompiledRule, fact: ErrorFacts) -> bool:
    """Whether every key of ``rule`` matches this one link: the plain statement of what
    ``classify_facts`` computes faster."""
    if rule.status is not None and fact.status not in rule.status:
        return False
    if rule.code is not None and fact.code not in rule.code:
        return False
    if rule.error_type is not None and fact.error_type not in rule.error_type:
        return False
    if rule.exception_keys and not _names_match(rule, fact.types):
        return False
    return rule.message is None or rule.message.search(fact.message) is not None


def _names_match(rule: CompiledRule, types: Sequence[str]) -> bool:
    return any(name_matches(prefix, name, t) for t in types for prefix, name in rule.exception_keys)


class RulePlan:
    """A policy's rules as bit masks (bit i is rule i): a link costs a few dict look-ups, and only
    the rules still possible after status, code, type and class run their regex.

    Parameters:
      rules(Sequence[CompiledRule]): The rules, in file order (copied).
    """

    def __init__(self, rules: Sequence[CompiledRule]) -> None:
        self.rules = tuple(rules)
        self.status_any, self.by_status = _index([r.status for r in rules])
        self.code_any, self.by_code = _index([r.code for r in rules])
        self.type_any, self.by_type = _index([r.error_type for r in rules])
        self.class_any = sum(1 << i for i, r in enumerate(rules) if not r.exception_keys)
        self.class_memo: dict[tuple[str, ...], int] = {}

    def candidates(self, fact: ErrorFacts) -> int:
        """The rules whose keys other than ``message`` all match ``fact``."""
        mask = (
            (self.status_any | self.by_status.get(fact.status, 0))
            & (self.code_any | self.by_code.get(fact.code, 0))
            & (self.type_any | self.by_type.get(fact.error_type, 0))
        )
        if mask & ~self.class_any:
            classes = self.class_memo.get(fact.types)
            if classes is None:
                classes = sum(
                    1 << i
                    for i, rule in enumerate(self.rules)
                    if rule.exception_keys and _names_match(rule, fact.types)
                )
                if len(self.class_memo) >= _MEMO_LIMIT:  # classes made on the fly
                    self.class_memo.clear()
                self.class_memo[fact.types] = classes
            mask &= self.class_any | classes
        return mask


def _index(values: Sequence[frozenset[Any] | None]) -> tuple[int, dict[Any, int]]:
    """(rules that do not look at this key, value -> rules that accept it)."""
    any_mask = 0
    by_value: dict[Any, int] = {}
    for i, allowed in enumerate(values):
        if allowed is None:
            any_mask |= 1 << i
            continue
        for value in allowed:
            by_value[value] = by_value.get(value, 0) | 1 << i
    return any_mask, by_value


def name_matches(prefix: str, name: str, dotted: str) -> bool:
    """Whether a rule's class name (split at its last dot into ``prefix`` and ``name``) matches
    the class ``dotted`` (``module.QualName``).

    ``Name`` matches a class of that name in any module; ``pkg.Name`` a class ``Name`` whose module
    is ``pkg`` or inside it (``openai.APIConnectionError`` matches
    ``openai._exceptions.APIConnectionError``); a full ``module.path.Name`` matches exactly. The
    class's name is the last dotted segment of ``dotted``.
    """
    module, _, last = dotted.rpartition(".")
    if last != name:
        return False
    return not prefix or module == prefix or module.startswith(prefix + ".")


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def throttled_by(exc: BaseException) -> Throttled | None:
    """The ``Throttled`` signal anywhere in ``exc``'s chain: not a failure, a re-delay."""
    return next((e for e in exception_chain(exc) if isinstance(e, Throttled)), None)
