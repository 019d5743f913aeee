"""The core plugin: diqa-bench's own executors, commands, statistics and figures, registered
through the same hooks (and checks) as any third-party plugin's. :func:`diqa_bench.plugins.load_plugins`
always loads it first, so no other plugin can take these names.

Every callable is a ``"module:attribute"`` string: registering imports nothing, and ``--help``,
``list`` and ``validate`` stay light.
"""

from __future__ import annotations

from diqa_bench.extensions import Command, Executor
from diqa_bench.hookspecs import hookimpl

RAY_OPTIONS = {
    "address": {"type": ["string", "null"], "description": "Ray cluster address (default: start a local one)"},
    "num_cpus_per_task": {"type": "number", "exclusiveMinimum": 0},
    "num_gpus_per_task": {"type": "number", "minimum": 0},
    "memory": {"type": ["integer", "null"], "minimum": 1},
    "max_retries": {"type": "integer", "minimum": 0},
    "shard_size": {"type": ["integer", "null"], "minimum": 1, "description": "test images per scoring shard"},
}


@hookimpl
def register_executors(register):
    register(Executor("local", "diqa_bench.executors:LocalExecutor", "one unit after another in this process (decoding workers and the CPU process pool as configured)"))
    register(Executor("ray", "diqa_bench.ray_executor:RayExecutor", "each unit as a task on a Ray cluster (pip install 'diqa-bench[ray]')", RAY_OPTIONS))


@hookimpl
def register_commands(register):
    from diqa_bench.study.cli import HELP

    register(Command("study", HELP, "diqa_bench.study.cli:run", "diqa_bench.study.cli:add_arguments"))
