"""Rebuild the shipped real-skin references from the original photos.

    python -m diqa_datasets.embedded.make_skin_photos SOURCE_FOLDER

SOURCE_FOLDER holds the 19 healthy-skin JPEGs of the Legit.Health AGPPGA study
(doi:10.5281/zenodo.17975532, CC BY 4.0; ``consented_images/image_00NN.jpg``). Each photo is turned
upright (EXIF orientation applied, then the EXIF block dropped), shrunk so that its shorter side is at
most ``SHORT_SIDE`` pixels (the default benchmark uses 160-192 px crops; photos already smaller are
kept as they are) and written as a high-quality JPEG without chroma subsampling, so the shipped
pristine references carry no compression artefacts of their own beyond the originals'.
"""

from __future__ import annotations

import sys
from pathlib import Path

SHORT_SIDE = 384
QUALITY = 95
HERE = Path(__file__).resolve().parent / "skin_photos"


def shrink(src: Path, dst: Path) -> tuple[int, int]:
    from PIL import Image, ImageOps

    with Image.open(src) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        scale = SHORT_SIDE / min(img.size)
        if scale < 1.0:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
        img.save(dst, format="JPEG", quality=QUALITY, subsampling=0, optimize=True)
        return img.size


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    sources = sorted(Path(args[0]).glob("image_*.jpg"))
    for src in sources:
        size = shrink(src, HERE / src.name)
        print(f"{src.name}: {size[0]}x{size[1]}")
    total = sum(p.stat().st_size for p in HERE.glob("*.jpg"))
    print(f"{len(sources)} photos, {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
