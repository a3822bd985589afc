"""`make fuzz`: schemathesis against openapi.yaml and the running local stack."""
