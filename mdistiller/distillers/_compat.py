"""Config blocks of mdistiller methods that this package does not implement.

They keep every mdistiller yaml file mergeable; selecting one of these methods
as ``DISTILLER.TYPE`` fails with the list of implemented methods. A method that
gets implemented moves its block into its class (``DEFAULTS``) and out of here.
"""

MDISTILLER_BLOCKS = {
    "RKD": {
        "DISTANCE_WEIGHT": 25,
        "ANGLE_WEIGHT": 50,
        "LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 1.0},
        "PDIST": {"EPSILON": 1e-12, "SQUARED": False},
    },
    "OFD": {"LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 0.001}, "CONNECTOR": {"KERNEL_SIZE": 1}},
    "SP": {"LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 3000.0}},
    "VID": {"LOSS": {"CE_WEIGHT": 1.0, "FEAT_WEIGHT": 1.0}, "EPS": 1e-5, "INIT_PRED_VAR": 5.0, "INPUT_SIZE": (32, 32)},
    "REVIEWKD": {
        "CE_WEIGHT": 1.0,
        "REVIEWKD_WEIGHT": 1.0,
        "WARMUP_EPOCHS": 20,
        "SHAPES": [1, 8, 16, 32],
        "OUT_SHAPES": [1, 8, 16, 32],
        "IN_CHANNELS": [64, 128, 256, 256],
        "OUT_CHANNELS": [64, 128, 256, 256],
        "MAX_MID_CHANNEL": 512,
        "STU_PREACT": False,
    },
}
