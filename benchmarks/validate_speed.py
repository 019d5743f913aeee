"""How long ``diqa-bench validate`` takes to read a KonIQ-10k-sized meta-info file (10,073 rows,
the official 7058 / 1000 / 2015 split codes) and check every image file, without decoding any.

    python benchmarks/validate_speed.py            # prints the wall time of each step
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]


def main() -> None:
    from diqa_bench import cli

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "koniq10k"
        (base / "512x384").mkdir(parents=True)
        lines = ["img_name,mos,std,split,c1,c2,c3,c4,c5,c_total"]
        codes = ["0"] * 7058 + ["1"] * 1000 + ["2"] * 2015
        t0 = time.perf_counter()
        for i, code in enumerate(codes):
            (base / "512x384" / f"{10000000 + i}.jpg").write_bytes(b"\xff\xd8\xff\xe0")
            lines.append(f"{10000000 + i}.jpg,{5 + i % 90}.25,0.55,{code},0.0,0.1,0.5,0.4,0.0,101")
        (base / "meta_info_KonIQ10kDataset.csv").write_text("\n".join(lines) + "\n")
        print(f"fixture: {len(codes)} rows and files written in {time.perf_counter() - t0:.2f} s")
        cfg = {"name": "speed", "domains": {"koniq": [{"dataset": "koniq10k", "options": {"root": str(base), "official_split": True}}]},
               "methods": [{"name": "brisque"}], "test_domains": ["koniq"]}
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(cfg))
        for run in (1, 2):
            t0 = time.perf_counter()
            code = cli.main(["validate", str(path)])
            print(f"validate run {run}: exit {code}, {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
