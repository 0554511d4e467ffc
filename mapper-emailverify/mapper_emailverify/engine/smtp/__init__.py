"""SMTP probing: `session` (one connection: I/O, reply parsing, limits), `replies` (what a reply
means), `prober` (politeness, sessions shared by recipients, catch-all)."""
