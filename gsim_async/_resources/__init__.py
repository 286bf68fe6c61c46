"""Resource namespaces: thin wrappers that validate, then call the transport."""
