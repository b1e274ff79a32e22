"""The report in Weights & Biases: table.csv as a wandb Table, and the agreement with the paper as the summary."""
import json
from pathlib import Path
from typing import Any


def log_report(run: Any, report_dir: Path) -> None:
    """Log the report in ``report_dir`` into ``run`` (a wandb run), then finish it."""
    import pandas as pd
    import wandb
    run.log({"table": wandb.Table(dataframe=pd.read_csv(report_dir / "table.csv"))})
    ranks = json.loads((report_dir / "agreement.json").read_text(encoding="utf-8"))["ranks"]
    run.summary.update({f"paper_{k}": v for k, v in ranks.items()})
    run.finish()
