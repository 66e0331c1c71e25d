"""Key material: keystore files for the server's own keys and the public keys clients publish at their jwks_uri."""
