"""The configuration problems evalq raises instead of printing or exiting.

Importing evalq never stops the host process: a bad setting, a bad policy file or a Redis that
cannot be found is one of these typed exceptions. The edges that own a process (the ``evalq``
CLI and the ``dramatiq workers`` start-up in ``workers.bootstrap``) print ``describe()`` as
``evalq: <line>`` on stderr and exit with ``EXIT_CODE``; an application catches them.
"""

from __future__ import annotations

#: The exit code of a process stopped by a configuration problem.
EXIT_CODE = 2


class ConfigurationError(Exception):
    """evalq cannot run as configured; ``describe()`` is what a person reads."""

    #: Printed before the message: what kind of configuration is wrong.
    kind = "invalid configuration"

    def describe(self) -> str:
        """``<kind>: <message>``: one line per problem, each naming the variable or file key."""
        return f"{self.kind}: {self}"


def did_you_mean(value: str, choices: tuple[str, ...] | list[str]) -> str:
    """``did you mean "<closest choice>"? `` when one of ``choices`` is close to ``value``, else
    empty: the start of an error message that then lists every choice."""
    import difflib  # only on a configuration error: a worker that starts cleanly never loads it

    close = difflib.get_close_matches(value, choices, n=1)
    return f'did you mean "{close[0]}"? ' if close else ""
