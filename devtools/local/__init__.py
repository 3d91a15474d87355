"""The local stack: an RDS-compatible PostgreSQL, its TLS and token checking, moto and a SigV4 gateway."""
