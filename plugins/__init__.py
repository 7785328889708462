"""pantau's built-in platform plugins, one module per platform, plus shared helpers.

Each platform module is registered through the ``pantau`` entry-point group (see
``pyproject.toml``), the same door third-party plugins use; the core never imports this package.
Shared helpers: :mod:`plugins.feeds` (feed bytes -> posts) and :mod:`plugins.dates`
(Indonesian dates and zones).
"""
