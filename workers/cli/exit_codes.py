"""The exit codes of ``evalq`` commands, one meaning each (documented in the README)."""

from __future__ import annotations

#: Done as asked.
OK = 0
#: The job (or one of the jobs) ended without a result, or an action was refused (abort of a
#: finished job, a record that cannot be redriven, a worker pool that died under `evalq up`).
FAILED = 1
#: Bad arguments or input (a bad JSONL line, an unknown category), bad settings or policy, no Redis.
USAGE = 2
#: Not finished in time: `submit --wait` timed out, `result` of a job still queued or running.
NOT_FINISHED = 3
#: No such job, dead letter or evaluation (unknown, or its record has expired).
NOT_FOUND = 4
