"""evalq's state in Redis: every key, the Lua scripts, job states and history, settlement of a
delivery, and the dead-letter store."""
