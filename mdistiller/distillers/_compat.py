"""Config blocks of mdistiller methods that this package does not implement.

They keep every mdistiller yaml file mergeable; selecting one of these methods
as ``DISTILLER.TYPE`` fails with the list of implemented methods. A method that
gets implemented moves its block into its class (``DEFAULTS``) and out of here.
"""

MDISTILLER_BLOCKS = {
    "AT": {"P": 2, "LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 1000.0}},
    "FITNET": {"HINT_LAYER": 2, "INPUT_SIZE": (32, 32), "LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 100.0}},
    "KDSVD": {"K": 1, "LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 1.0}},
    "NST": {"LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 50.0}},
    "PKT": {"LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 30000.0}},
}
