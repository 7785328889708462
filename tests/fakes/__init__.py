"""Loopback fake servers and realistic response bodies for the platform plugins' tests.

One module per platform (``feeds`` for RSS/Atom). Nothing here touches the outside network.

Import as ``from fakes.feeds import ...``: ``tests/`` has no ``__init__.py``, so pytest puts
``tests/`` itself on ``sys.path`` (both ``pytest`` and ``python -m pytest`` then find it).
"""
