"""The bundled person segmenter: a real photo's person is kept, its background is not."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from PIL import Image

from avat3r_cli.preprocess.person_mask import PersonSegmenter, person_masks


def test_the_astronaut_is_the_person_and_the_wall_is_not():
    image = skimage.data.astronaut()  # 512², head near the top centre
    with PersonSegmenter() as segmenter:
        mask = segmenter.mask(image)
    assert mask.shape == (512, 512) and mask.dtype == np.float32
    assert 0.0 <= mask.min() and mask.max() <= 1.0
    assert mask[70:130, 200:270].mean() > 0.9  # the face
    assert mask[10:40, 380:470].mean() < 0.1  # the wall beside the shuttle, top right


def test_masks_follow_the_size_of_small_crops():
    crop = np.asarray(Image.fromarray(skimage.data.astronaut()[0:256, 64:320]).resize((128, 128)))
    masks = person_masks(np.stack([crop, crop[:, ::-1].copy()]))
    assert masks.shape == (2, 1, 128, 128)
    # A mirrored photo gets the mirrored mask (to within the model's own asymmetry).
    assert np.abs(masks[0, 0] - masks[1, 0, :, ::-1]).mean() < 0.05


def test_a_non_rgb_array_is_refused():
    with PersonSegmenter() as segmenter, pytest.raises(ValueError, match="uint8"):
        segmenter.mask(np.zeros((8, 8), dtype=np.float32))
