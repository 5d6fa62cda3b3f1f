"""What the client, OpenAI guard and LiteLLM tests send, and the policy they run under:
emails redacted in requests, cards blocked in requests only, GitHub tokens blocked both ways."""

CARD = "4111 1111 1111 1111"
GITHUB = "ghp_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
POLICY = """
[policies.default]

[[policies.default.rules]]
id = "pii.email"
detector = "email"
action = "redact"
applies_to = ["input"]

[[policies.default.rules]]
id = "pii.credit_card"
detector = "credit_card"
applies_to = ["input"]

[[policies.default.rules]]
id = "secrets.github_token"
detector = "github_token"
"""
