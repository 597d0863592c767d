"""Model packages: the model card, the one build/prove path every model takes, and the built-in
models (``breast_cancer``, ``bounty_eval``) that go through exactly that path."""
