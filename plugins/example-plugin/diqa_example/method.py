"""``laplacian-variance``: the variance of the Laplacian, a classic no-reference sharpness cue.

A method receives a Batch (float RGB tensors in [0, 1], same size, on the run's device) and
returns one score per image. The harness does decoding, batching, caching and statistics.
"""

from diqa_bench.errors import DataError
from diqa_bench.methods import Method


class LaplacianVariance(Method):
    name = "laplacian-variance"
    version = "1"  # part of every cache key: bump it when the scores change
    description = "variance of the Laplacian (sharpness; example plugin)"
    lower_better = False  # sharper images score higher
    # Options arrive as keyword arguments; any option not declared here is a config error.
    options_schema = {"grayscale": {"type": "boolean", "description": "Laplacian of the grey image (default) or of each colour channel"}}

    def __init__(self, grayscale: bool = True):
        super().__init__(grayscale=grayscale)  # the options go into the cache key
        self.grayscale = grayscale

    def score_batch(self, batch):
        import torch  # imported here, not at module level: `diqa-bench list` must stay instant

        height, width = batch.images.shape[-2:]
        if min(height, width) < 3:  # a DataError skips this image (with this reason), not the batch
            raise DataError(f"{batch.paths[0]}: the 3x3 Laplacian needs at least 3x3 pixels, got {height}x{width}")
        x = batch.images.mean(1, keepdim=True) if self.grayscale else batch.images
        channels = x.shape[1]
        kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=x.device)
        laplacian = torch.nn.functional.conv2d(x, kernel.expand(channels, 1, 3, 3), groups=channels)
        return laplacian.var(dim=(2, 3)).mean(1)
