"""Tooling around the services: the `crm` command, the embedded dev stack, rebuilds, key
issuing, the demo history, and the registry of services they share. The services never
import it; it may import them (through the registry)."""
