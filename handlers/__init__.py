"""The handler chain: the contract (handlers.base), the loader (handlers.chain), one module per handler."""
