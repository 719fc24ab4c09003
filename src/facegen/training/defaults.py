"""Every training default, once: `training_loop`'s signature, `facegen train`'s options and its --help read them.

A plain dict in a module that imports nothing, so `facegen --help` stays fast.
"""

DEFAULTS = {
    "size": 64,                # Image side in pixels.
    "steps": 5000,             # Total optimisation steps.
    "batch_size": 64,          # Images per step, summed over all processes.
    "seed": 0,                 # Seed of data order, noise and initialisation.
    "log_every": 50,           # Steps between log lines / stats.jsonl rows.
    "sample_every": 500,       # Steps between sample grids.
    "checkpoint_every": 500,   # Steps between checkpoints (and model exports).
    "resume": None,            # A checkpoint or run folder to continue from.
    "init_from": None,         # A new run's starting weights: another run's folder or checkpoint, or a model.
    "accelerator": "auto",     # Fabric accelerator.
    "devices": 1,              # Devices (processes) per node.
    "num_nodes": 1,            # Machines.
    "strategy": "auto",        # Fabric strategy.
    "precision": "32-true",    # Fabric precision.
    "threads": None,           # CPU threads per process (None: torch's choice).
    "progress": True,          # Show a progress bar.
    "max_seconds": None,       # Stop (with a checkpoint) after this much wall time.
}
