"""The local demo (``make demo``): real KM3NeT sample files through a two-step processing train on the sandbox."""
