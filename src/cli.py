"""The ``leadscore`` command line: one command per pipeline stage, plus serving and batch scoring.

Every stage command reads ``params.yaml`` (``--params``) and calls the stage's ``run_*`` function; the
stage modules are imported lazily so ``leadscore --help`` stays fast.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from leadscore.config import Params, load_params

app = typer.Typer(
    name="leadscore",
    help="Lead propensity pipeline: demo data, validation, point-in-time features, LightGBM, serving.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="Path to params.yaml.")]


def _params(path: Path) -> Params:
    try:
        return load_params(path)
    except (FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: invalid params ({path}):\n{exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


def _timed(stage: str, fn, *args):
    """Run a stage, print its wall time on stderr, turn domain errors into a clean exit."""
    start = time.perf_counter()
    try:
        result = fn(*args)
    except (ValueError, FileNotFoundError) as exc:
        typer.secho(f"error in stage {stage}: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc
    typer.secho(f"[{stage}] done in {time.perf_counter() - start:.1f}s", fg="green", err=True)
    return result


@app.command()
def generate(params: ParamsOpt = Path("params.yaml")) -> None:
    """Generate the demo B2B funnel into data/demo/ (data.demo_dir; never into your data/raw/)."""
    from leadscore.data.generate import generate as gen
    from leadscore.data.generate import write_tables

    p = _params(params)
    tables = _timed("generate", gen, p.generate, p.features)
    write_tables(tables, p.data.demo_dir)
    typer.echo(json.dumps({k: len(v) for k, v in tables.items()}))


@app.command()
def validate(params: ParamsOpt = Path("params.yaml")) -> None:
    """Validate data/raw/ against the contract; write clean tables and the quarantine."""
    from leadscore.data.validate import run_validate

    _timed("validate", run_validate, _params(params))


@app.command()
def snapshots(params: ParamsOpt = Path("params.yaml")) -> None:
    """Point-in-time examples and labels per target, split by time."""
    from leadscore.features.stage import run_snapshots

    _timed("snapshots", run_snapshots, _params(params))


@app.command()
def features(params: ParamsOpt = Path("params.yaml")) -> None:
    """Feature tables per target and split (batch builder on DuckDB)."""
    from leadscore.features.stage import run_features

    typer.echo(json.dumps(_timed("features", run_features, _params(params))))


@app.command()
def train(params: ParamsOpt = Path("params.yaml")) -> None:
    """Train one LightGBM model per target and calibrate it on the calibration slice."""
    from leadscore.models.train import run_train

    _timed("train", run_train, _params(params))


@app.command()
def evaluate(params: ParamsOpt = Path("params.yaml")) -> None:
    """Evaluate model, rule baseline and oracle on the out-of-time test slice."""
    from leadscore.models.evaluate import run_evaluate

    _timed("evaluate", run_evaluate, _params(params))


@app.command()
def thresholds(params: ParamsOpt = Path("params.yaml")) -> None:
    """Choose stage thresholds from goals on the calibration slice; write the threshold table."""
    from leadscore.models.thresholds import run_thresholds

    _timed("thresholds", run_thresholds, _params(params))


@app.command()
def bundle(params: ParamsOpt = Path("params.yaml")) -> None:
    """Assemble the checksummed scoring bundle under models/."""
    from leadscore.models.bundle import run_bundle

    _timed("bundle", run_bundle, _params(params))


@app.command()
def explain(params: ParamsOpt = Path("params.yaml")) -> None:
    """SHAP explanations, funnel metrics and the HTML report for marketing."""
    from leadscore.models.explain import run_explain

    _timed("explain", run_explain, _params(params))


@app.command()
def publish(params: ParamsOpt = Path("params.yaml")) -> None:
    """Log the run to MLflow and register the bundle as a model version."""
    from leadscore.models.registry import run_publish

    _timed("publish", run_publish, _params(params))


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides LEADSCORE_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides LEADSCORE_PORT.")] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Serve a registry version, e.g. models:/lead-propensity@champion (LEADSCORE_MODEL)."
        ),
    ] = None,
) -> None:
    """Serve the scoring API (settings from LEADSCORE_* environment variables)."""
    import os

    from leadscore.serve.main import run_server

    if model:
        os.environ["LEADSCORE_MODEL"] = model  # read by the settings (and by uvicorn's workers)

    run_server(host=host, port=port)


@app.command()
def score(
    input: Annotated[Path, typer.Argument(help="Leads to score: CSV or Parquet (see docs/api.md).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write scores (.csv or .parquet).")],
    bundle_dir: Annotated[Path, typer.Option("--bundle", help="Bundle directory.")] = Path("models"),
    events: Annotated[Path | None, typer.Option(help="Events of these leads (CSV/Parquet).")] = None,
    as_of: Annotated[str | None, typer.Option(help="Score as of this time (default: now, UTC).")] = None,
    explain: Annotated[bool, typer.Option(help="Add top reasons.")] = True,
    stage_history: Annotated[
        Path | None, typer.Option("--stage-history", help="Stage changes of these leads (CSV/Parquet).")
    ] = None,
    accounts: Annotated[Path | None, typer.Option(help="Accounts of these leads (CSV/Parquet).")] = None,
    crm: Annotated[
        Path | None,
        typer.Option(help="Mapping file with a writeback block: write under the CRM's field names."),
    ] = None,
) -> None:
    """Score a file of leads offline with the same code path as the API (for CRM bulk imports).

    A flat bundle (``train-table``) scores rows of an export-like file with the export's own columns."""
    from leadscore.score import score_file

    result = _timed(
        "score", score_file, input, output, bundle_dir, events, as_of, explain, stage_history, accounts, crm
    )
    typer.echo(json.dumps(result))


def _table_params(params: Path | None, flags: dict[str, object]):
    """train-table settings: defaults, then --params (or ./params.yaml when present), then the flags."""
    from leadscore.config import load_table_params

    path = params if params is not None else (Path("params.yaml") if Path("params.yaml").is_file() else None)
    try:
        return load_table_params(path, {k: v for k, v in flags.items() if v not in (None, [], False)})
    except (FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: invalid settings ({path or 'defaults'}):\n{exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


@app.command("train-table")
def train_table(
    export: Annotated[Path, typer.Argument(help="A flat export: one row per lead (CSV or Parquet).")],
    target: Annotated[str, typer.Option(help="The outcome column.")],
    positive: Annotated[
        list[str] | None, typer.Option("--positive", help="An outcome value meaning converted (repeatable).")
    ] = None,
    negative: Annotated[
        list[str] | None,
        typer.Option("--negative", help="An outcome value meaning lost (repeatable); other values are open."),
    ] = None,
    date_column: Annotated[
        str | None, typer.Option("--date-column", help="Split by time on this column (the lead's creation).")
    ] = None,
    rows_in_time_order: Annotated[
        bool, typer.Option("--rows-in-time-order", help="No date column; the rows are in time order.")
    ] = False,
    drop: Annotated[
        list[str] | None, typer.Option("--drop", help="A column to leave out (repeatable).")
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option("--allow", help="Keep a column a heuristic or the leakage guard dropped (repeatable)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Output folder for bundle and reports.")] = Path("flat"),
    params: Annotated[
        Path | None, typer.Option("--params", "-p", help="Settings file (default: ./params.yaml if present).")
    ] = None,
) -> None:
    """Train on a flat export (one row per lead) with the leakage guard; writes a servable bundle."""
    from leadscore.models.flat import run_train_table

    if date_column and rows_in_time_order:
        typer.secho("error: give --date-column or --rows-in-time-order, not both", fg="red", err=True)
        raise typer.Exit(2)
    p = _table_params(
        params,
        {
            "positive_values": positive,
            "negative_values": negative,
            "date_column": date_column,
            "rows_in_time_order": rows_in_time_order,
            "drop_columns": drop,
            "allow_columns": allow,
        },
    )
    _timed("train-table", run_train_table, export, target, p, out)


# --- the retraining loop (issue 12): compare, promote, rollback, models, monitor ----------------------


def _registry_errors(fn):
    """A stage that reads the champion: a registry or bundle problem becomes a one-line error."""
    from leadscore.models.bundle import BundleError

    def wrapped(*args):
        try:
            return fn(*args)
        except BundleError as exc:
            raise ValueError(f"champion: {exc}") from exc

    return wrapped


@app.command()
def compare(params: ParamsOpt = Path("params.yaml")) -> None:
    """Champion vs the new bundle on the same recent out-of-time slice; writes reports/compare.json."""
    from leadscore.models.compare import run_compare

    result = _timed("compare", _registry_errors(run_compare), _params(params))
    typer.echo(f"decision: {result['decision']}")
    for reason in result["reasons"]:
        typer.echo(f"  - {reason}")


@app.command()
def monitor(params: ParamsOpt = Path("params.yaml")) -> None:
    """Backtest and drift of the champion on the newest export; reports/backtest.csv and drift.json."""
    from leadscore.models.monitor import run_monitor

    result = _timed("monitor", _registry_errors(run_monitor), _params(params))
    typer.echo(f"retrain recommended: {result['retrain_recommended']}")
    for reason in result["reasons"]:
        typer.echo(f"  - {reason}")


def _registry_call(fn, *args, **kwargs):
    from leadscore.models.promotion import PromotionError

    try:
        return fn(*args, **kwargs)
    except PromotionError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from exc


ByOpt = Annotated[str | None, typer.Option("--by", help="Who acts (default: LEADSCORE_USER or login).")]


@app.command()
def promote(
    version: Annotated[
        str | None, typer.Option(help="Version to promote (default: alias challenger).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote whatever the gate said.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (required with --force; recorded).")] = None,
    by: ByOpt = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Move the registry alias `champion` to the challenger when its gate passed (or --force --reason)."""
    from leadscore.models.promotion import promote as do_promote
    from leadscore.models.promotion import registry_client

    name = _params(params).publish.registered_model
    typer.echo(json.dumps(_registry_call(do_promote, registry_client(), name, version, force, reason, by)))


@app.command()
def rollback(
    reason: Annotated[str | None, typer.Option(help="Why (recorded).")] = None,
    by: ByOpt = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Move the registry alias `champion` back to the previous champion."""
    from leadscore.models.promotion import registry_client
    from leadscore.models.promotion import rollback as do_rollback

    name = _params(params).publish.registered_model
    typer.echo(json.dumps(_registry_call(do_rollback, registry_client(), name, reason, by)))


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Registered versions: aliases, metrics, gate results, who promoted each and why."""
    from rich.console import Console
    from rich.table import Table

    from leadscore.models.promotion import list_versions, registry_client

    name = _params(params).publish.registered_model
    rows = list_versions(registry_client(), name)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{name} (tracking: MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    for col in ("version", "aliases", "model", "ROC-AUC (test)", "gate", "promoted", "thresholds"):
        table.add_column(col, overflow="fold")
    for r in rows:
        gate = r["gate"]["decision"] or "-"
        if r["gate"]["roc_auc"]:
            auc = r["gate"]["roc_auc"]
            lo, hi = auc["ci"]
            gate += f" (AUC {auc['value']:.3f} [{lo:.3f}, {hi:.3f}] vs v{r['gate']['vs_champion']})"
        promoted = "-"
        if r["promoted"]:
            p = r["promoted"]
            why = p["reason"] if len(p["reason"] or "") <= 60 else p["reason"][:57] + "..."
            promoted = f"{p['at']} by {p['by']}{' (forced)' if p['forced'] == 'true' else ''}: {why}"
        if r["rolled_back"]:
            promoted += f"; rolled back {r['rolled_back']['at']} by {r['rolled_back']['by']}"
        table.add_row(
            r["version"], ",".join(r["aliases"]), r["model_version"] or "-",
            " ".join(f"{k.split('.')[0]}={v}" for k, v in sorted(r["metrics"].items()) if "roc_auc" in k),
            gate, promoted,
            str(len(r["thresholds_updates"])),
        )  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    app()
