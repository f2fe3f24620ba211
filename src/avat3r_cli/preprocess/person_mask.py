"""Person masks of photos: MediaPipe's selfie segmenter (person with hair and clothes vs background).

The position map's confidence covers only the template head proxy, an oval: hair that reaches
past it, a beard, the shoulders are outside. Matting a photo by that oval (what refinement and
the real-photo evaluation compared against before) turns such hair into background, so fitting
fades it and a score rewards the fading. The segmenter's mask follows the person instead. It runs
on the crop itself (the model is made for head-and-shoulders images and resizes to 256², so a
128² crop is enough), in about 5 ms.

The model file ships in ``avat3r_cli/assets/mediapipe/`` (see its README).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avat3r_cli.io.mediapipe_assets import selfie_segmenter_path
from avat3r_cli.preprocess.mediapipe_task import MediaPipeTask


class PersonSegmenter(MediaPipeTask):
    """MediaPipe's selfie segmenter as a context manager.

    ``with PersonSegmenter() as seg: mask = seg.mask(image)``.
    """

    purpose = "person segmentation"

    def __enter__(self) -> PersonSegmenter:
        self.open()
        return self

    def _create(self, BaseOptions: Any, vision: Any) -> Any:
        options = vision.ImageSegmenterOptions(
            base_options=BaseOptions(model_asset_path=str(selfie_segmenter_path())),
            output_confidence_masks=True,
            output_category_mask=False,
        )
        return vision.ImageSegmenter.create_from_options(options)

    def mask(self, image: np.ndarray) -> np.ndarray:
        """``float32 [H, W]`` in 0..1: how surely each pixel of ``image`` (``uint8 [H, W, 3]`` RGB) is the person."""
        self.open()
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {list(image.shape)}")
        frame = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        result = self._task.segment(frame)
        mask = np.asarray(result.confidence_masks[0].numpy_view(), dtype=np.float32)
        return np.clip(mask.reshape(image.shape[:2]), 0.0, 1.0)


def person_masks(images: np.ndarray) -> np.ndarray:
    """``float32 [V, 1, H, W]`` person masks of ``images`` (``uint8 [V, H, W, 3]``)."""
    with PersonSegmenter() as segmenter:
        return np.stack([segmenter.mask(image)[None] for image in images])
