"""``aigov audit``: one function per check, each returning findings; text, JSON and SARIF renderers."""
