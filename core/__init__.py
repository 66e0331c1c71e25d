"""The pieces every stage of the chain shares: errors, the token request and its results,
configuration, the failure budgets and the services container. Below the handler chain, above
keystore/ and storage/."""
