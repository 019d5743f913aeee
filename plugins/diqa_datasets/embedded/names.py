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
    "air_bubbles",
    "immersion_fluid",
    "ruler",
    "ink_marking",
    "hair_occlusion",
    "partial_framing",
    "combined",
)
# What a dermatology photo or dermoscopy image shows besides the camera's own faults: contact
# fluid, measuring aids, pen marks, hair, a badly framed subject, and several of them at once.
ACQUISITION_ARTEFACTS = DISTORTION_NAMES[9:]
CAMERA_DISTORTIONS = DISTORTION_NAMES[:9]
