"""The vending pipeline: validate -> identify -> authorize -> mint -> respond, then audit."""
