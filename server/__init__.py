"""The web layer and the pieces every stage shares: configuration, errors, the token request."""
