"""The report layer: run dirs -> tidy results table -> scores, tables, plots, paper reproductions.

Never imports torch-heavy training code: it reads run directories (``.hydra/config.yaml``,
``metrics.jsonl``, ``summary.json``) and published CSVs only.
"""
from .collect import Collection, collect, find_run_dirs, read_table, write_table
from .scores import delta_m, mean_rank, paired_test, seed_stats

__all__ = ["Collection", "collect", "delta_m", "find_run_dirs", "mean_rank", "paired_test", "read_table",
           "seed_stats", "write_table"]
