"""One construct per file; each takes keyword-only props and exposes what the stacks wire."""
