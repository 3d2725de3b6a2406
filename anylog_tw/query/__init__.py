"""The network query path: rewrite a user's SELECT for the operators, merge their answers."""
