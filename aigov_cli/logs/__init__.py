"""``aigov logs``: reading the decision log (queries, follow, export, stats) in constant memory."""
