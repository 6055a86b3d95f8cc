"""Config blocks of mdistiller methods that this package does not implement.

They keep every mdistiller yaml file mergeable; selecting one of these methods
as ``DISTILLER.TYPE`` fails with the list of implemented methods. A method that
gets implemented moves its block into its class (``DEFAULTS``) and out of here.
Every method of mdistiller's ``cfg.py`` is implemented now, so the table is empty.
"""

MDISTILLER_BLOCKS = {}
