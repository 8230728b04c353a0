"""Built-in methods of harness, one package per family.

Each family's ``methods`` module is a pluggy plugin registered through the ``harness_automl``
entry-point group, exactly as a third-party package's would be; the other modules of a family
package hold what only that family uses. A family imports the plugin contract (``harness``,
``harness.info``, ``harness.task``, ``harness.context``, ``harness.errors``), ``harness.data`` and
the shared toolkit (``harness.toolkit``), never another family.
"""
