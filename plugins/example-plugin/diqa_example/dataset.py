"""``example-blur``: a checkerboard photographed at five focus settings, generated on first use.

A dataset yields Records: an image path, its MOS and its content group (images of one group never
straddle a train/test split). Here each pattern is one group and blurrier images get lower MOS.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from diqa_bench.datasets import Dataset, Record


class ExampleBlur(Dataset):
    name = "example-blur"
    description = "synthetic checkerboards at 5 blur levels (example plugin)"
    options_schema = {"patterns": {"type": "integer", "minimum": 2, "maximum": 50}}

    def __init__(self, patterns: int = 6):
        super().__init__(patterns=patterns)
        self.patterns = patterns
        self.mos_range = (1.0, 5.0)  # the scale of the labels
        self.pseudo_mos = True  # labels come from the generator, not from human raters
        self.synthetic = True

    def load(self, ctx):
        self.root = Path(ctx.cache_dir) / "example-blur" / str(self.patterns)
        self.root.mkdir(parents=True, exist_ok=True)
        records = []
        for p in range(self.patterns):
            cells = 4 + 2 * p
            board = (np.indices((96, 96)) // (96 // cells)).sum(0) % 2
            sharp = Image.fromarray((board * 200 + 30).astype(np.uint8)).convert("RGB")
            for level in range(5):
                name = f"p{p}_blur{level}.png"
                if not (self.root / name).exists():
                    sharp.filter(ImageFilter.GaussianBlur(radius=level * 1.2)).save(self.root / name)
                records.append(Record(id=name, path=name, mos=5.0 - level, group=f"pattern{p}", distortion="blur", level=level + 1))
        return records
