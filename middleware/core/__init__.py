"""The pure error-policy core: what applications raise, the facts of an exception, classification,
attempt numbering, decisions, backoff, failure text, redaction and explanations.

Nothing here talks to Redis, a broker or a clock it was not handed (``tests/unit/middleware/core``
enforces it): these modules take data and return data.
"""
