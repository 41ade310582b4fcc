"""Reports over run folders: metric tables (mean ± std over seeds) and per-layer rank reports.

matplotlib is imported only when a figure is drawn (reports.figures), so the tables stay cheap.
"""
from salora_cli.reports.metrics_table import MetricsReport, MetricsRow, Stat, build_metrics_report
from salora_cli.reports.rank_report import RankReport, build_rank_report, compare_rank_distributions
from salora_cli.reports.runs import RunRecord, RunScan, find_runs, load_run

__all__ = [
    "MetricsReport", "MetricsRow", "RankReport", "RunRecord", "RunScan", "Stat",
    "build_metrics_report", "build_rank_report", "compare_rank_distributions", "find_runs", "load_run",
]
