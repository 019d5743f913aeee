"""Distortion names and level count, importable without numpy/scipy (listing datasets stays instant)."""

LEVELS = 5
DISTORTION_NAMES = (
    "defocus_blur",
    "motion_blur",
    "sensor_noise",
    "jpeg",
    "under_exposure",
    "over_exposure",
    "colour_cast",
    "low_resolution",
    "specular_glare",
)
