"""``laplacian-variance``: the variance of the Laplacian, a classic no-reference sharpness cue.

A method receives a Batch (float RGB tensors in [0, 1], same size, on the run's device) and
returns one score per image. The harness does decoding, batching, caching and statistics.
"""

from diqa_bench.methods import Method


class LaplacianVariance(Method):
    name = "laplacian-variance"
    version = "1"  # part of every cache key: bump it when the scores change
    description = "variance of the Laplacian (sharpness; example plugin)"
    lower_better = False  # sharper images score higher
    options_schema = {"grayscale": {"type": "boolean"}}

    def score_batch(self, batch):
        import torch  # imported here, not at module level: `diqa-bench list` must stay instant

        x = batch.images.mean(1, keepdim=True)
        kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=x.device).view(1, 1, 3, 3)
        return torch.nn.functional.conv2d(x, kernel).var(dim=(1, 2, 3))
