"""``avat3r models [--json]``: the presets and the registered weights.

Parameter counts come from building each model on the meta device (no memory, no download).
Heavy imports stay inside the command body so ``avat3r --help`` does not import torch.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer


def model_rows() -> list[dict[str, Any]]:
    """One dict per preset and per registered weights (what ``avat3r models`` prints)."""
    import torch

    from avat3r_cli.io.registry import entries
    from avat3r_cli.io.weights import CONFIG_FILE, read_config
    from avat3r_cli.model.avat3r import Avat3r
    from avat3r_cli.model.config import PRESETS, ModelConfig

    def count(config: ModelConfig) -> int:
        with torch.device("meta"):
            return Avat3r(config).num_parameters()

    def describe(config: ModelConfig) -> dict[str, Any]:
        return {
            "parameters": count(config),
            "resolution": [config.input_size, config.input_size],
            "network_resolution": [config.image_size, config.image_size],
            "patch": config.patch_size,
            "width": config.width,
            "blocks": config.depth,
            "heads": config.num_heads,
            "tokens_per_view": config.tokens_per_view,
            "geometry_backend": config.geometry_backend,
            "feature_backend": config.feature_backend,
        }

    rows: list[dict[str, Any]] = []
    for preset in PRESETS.values():
        rows.append(
            {"name": preset.name, "kind": "preset", **describe(preset.config), "licence": None, "source": None,
             "note": preset.note}
        )
    for entry in entries():
        config = PRESETS[entry.preset].config if entry.preset in PRESETS else None
        if entry.folder is not None and (entry.folder / CONFIG_FILE).is_file():
            # Bundled weights say what they are: a preset may have changed since they were trained.
            try:
                config = ModelConfig.from_dict(read_config(entry.folder))
            except ValueError:
                pass  # an unreadable config is reported when the weights are loaded; list the preset's
        row: dict[str, Any] = {"name": entry.name, "kind": "weights"}
        row.update(describe(config) if config is not None else {"parameters": None})
        # The registry, not the preset, says what preprocessing these weights were trained with.
        row.update(
            geometry_backend=entry.geometry_backend, feature_backend=entry.feature_backend,
            licence=entry.licence, source=entry.source, note=entry.description,
        )
        rows.append(row)
    return rows


def _millions(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:.1f}M"


def models(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List the model presets and the registered weights."""
    rows = model_rows()
    if json_output:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    header = (
        f"{'name':<14} {'kind':<8} {'params':>8} {'input':>9} {'patch':>5}  {'geometry':<9} {'features':<11} licence"
    )
    typer.echo(header)
    for r in rows:
        res = "x".join(str(s) for s in r.get("resolution") or []) or "?"
        typer.echo(
            f"{r['name']:<14} {r['kind']:<8} {_millions(r['parameters']):>8} {res:>9} {r.get('patch', '?')!s:>5}  "
            f"{r['geometry_backend']:<9} {r['feature_backend']:<11} {r['licence'] or '-'}"
        )
    if not any(r["kind"] == "weights" for r in rows):
        typer.echo("no trained weights are registered yet (Avat3r's authors published none)")
