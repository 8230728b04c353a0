"""Built-in methods of harness. Each module is a pluggy plugin registered through the ``harness``
entry-point group, exactly as a third-party package's would be."""
