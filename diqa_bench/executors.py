"""Executors run the grid's units. Units are independent, so an executor may run them anywhere, each
through a :class:`~diqa_bench.scorer.Scorer` of the run's plan: ``run(scorer, units, on_unit)``.
``LocalExecutor`` runs them one after another in this process (the DataLoader's worker processes
decode images in parallel, and the model has the device to itself); the Ray executor is in
:mod:`diqa_bench.ray_executor`."""

from __future__ import annotations

import time
from typing import Callable


class LocalExecutor:
    def __init__(self, progress: bool = False, log: Callable[[str], None] = print) -> None:
        self.progress = progress
        self.log = log

    def run(self, scorer, units, on_unit=None):
        outcomes = []
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(units), unit="unit", desc="benchmark", dynamic_ncols=True)
        for i, unit in enumerate(units, 1):
            t0 = time.time()
            if bar is not None:
                bar.set_postfix_str(unit.describe())
            result = scorer.run_unit(unit)
            outcomes.extend(result)
            if on_unit is not None:
                on_unit(unit, result)
            status = ", ".join(sorted({o.status for o in result})) or "done"  # a deploy fit on all train content scores nothing
            if bar is not None:
                bar.update(1)
            else:
                self.log(f"[{i}/{len(units)}] {unit.describe()}: {status} ({time.time() - t0:.1f}s)")
            reasons = dict.fromkeys(f"{o.status}: {o.reason}" for o in result if o.status != "ok")
            for why in reasons:  # a unit's cells usually fail for one reason: say it once
                msg = f"  {unit.describe()}: {why}"
                if bar is not None:
                    bar.write(msg)
                else:
                    self.log(msg)
        if bar is not None:
            bar.close()
        return outcomes
