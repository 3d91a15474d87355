"""rdsvend: short-lived RDS IAM database auth tokens, vended by policy."""
