"""``avat3r weights list | download NAME | verify [NAME]``.

Thin: the work is in ``io/weights.py`` and ``io/registry.py``. Failures raise ``Avat3rError``,
which the app's error boundary prints as one line with exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from avat3r_cli.cli.help_format import FlagsWithoutTypeCommand

app = typer.Typer(help="Registered model weights: list, download (verified), verify.", no_args_is_help=True)


def _status(entry: Any) -> tuple[str, Path | None]:
    """(``bundled`` | ``missing`` | ``cached`` | ``not downloaded``, folder or None) without network."""
    if entry.folder is not None:
        return ("bundled", entry.folder) if entry.folder.is_dir() else ("missing", None)
    from huggingface_hub import try_to_load_from_cache

    from avat3r_cli.io.weights import MODEL_FILES

    folder = None
    for filename in tuple(entry.hashes) or MODEL_FILES:
        found = try_to_load_from_cache(entry.repo, filename, revision=entry.revision)
        if not isinstance(found, str):
            return "not downloaded", None
        folder = Path(found).parent
    return "cached", folder


@app.command("list", cls=FlagsWithoutTypeCommand)
def list_weights(
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List the registered weights and whether they are on this machine."""
    from avat3r_cli.io.registry import entries

    rows = []
    for entry in entries():
        status, folder = _status(entry)
        rows.append(
            {
                "name": entry.name, "status": status, "source": entry.source, "preset": entry.preset,
                "licence": entry.licence, "geometry_backend": entry.geometry_backend,
                "feature_backend": entry.feature_backend, "folder": str(folder) if folder else None,
                "description": entry.description,
            }
        )
    from avat3r_cli.pipeline.assets import ASSETS

    assets = [
        {"name": a.name, "status": a.status(), "source": a.source, "licence": a.licence, "size": a.size, "role": a.role}
        for a in ASSETS
    ]
    if json_output:
        for row in rows + assets:
            typer.echo(json.dumps(row))
        return
    if not rows:
        typer.echo("Avat3r models: none registered; a model folder or hub repo org/name works wherever one is asked for")
    else:
        typer.echo("Avat3r models:")
    for r in rows:
        typer.echo(
            f"  {r['name']:<18} {r['status']:<15} {r['licence']:<17} "
            f"{r['geometry_backend']}+{r['feature_backend']:<12} {r['source']}"
        )
    typer.echo("Preprocessing models:")
    for a in assets:
        typer.echo(f"  {a['name']:<18} {a['status']:<15} {a['licence']:<17} {a['size']:>7}  {a['role']}  ({a['source']})")


@app.command("download", cls=FlagsWithoutTypeCommand)
def download_weights(
    name: Annotated[str, typer.Argument(help="A registered name or a hub repo org/name[@revision].")],
) -> None:
    """Download weights into the Hugging Face cache (HF_HOME) and verify their sha256."""
    from avat3r_cli.io.weights import download
    from avat3r_cli.pipeline.assets import download_asset, find_asset

    asset = find_asset(name)
    if asset is not None:
        typer.echo(f"{asset.name} ({asset.licence}, {asset.size}): {download_asset(asset)}")
        return

    folder, entry = download(name)
    note = "sha256 verified" if entry is not None and entry.hashes else "not registered: no hashes to verify"
    typer.echo(f"{name}: {folder} ({note})")


@app.command("verify", cls=FlagsWithoutTypeCommand)
def verify_weights(
    name: Annotated[
        str | None, typer.Argument(help="A registered name, hub repo or folder; all registered weights if omitted.")
    ] = None,
) -> None:
    """Check hashes of downloaded weights and that their tensors fit their config (exit 1 if not)."""
    from avat3r_cli.core.errors import Avat3rError
    from avat3r_cli.io.registry import entries, find_entry
    from avat3r_cli.io.weights import WEIGHTS_FILE, check_folder, resolve, sha256_file, verify_files
    from avat3r_cli.model.avat3r import Avat3r

    if name is None:
        targets = [e.name for e in entries()]
        if not targets:
            typer.echo("no weights are registered yet; nothing to verify")
            return
    else:
        targets = [name]
    failed = False
    for target in targets:
        entry = find_entry(target)
        if entry is not None and name is None and _status(entry)[0] in ("not downloaded", "missing"):
            typer.echo(f"{target}: not downloaded (run: avat3r weights download {target})")
            continue
        try:
            folder, _, entry = resolve(target, download=False)
            if entry is not None and entry.hashes:
                verify_files(folder, entry.hashes, target)
            _, parameters = check_folder(folder, Avat3r.from_config_dict)
            digest = entry.hashes.get(WEIGHTS_FILE) if entry is not None and entry.hashes else None
            digest = digest or sha256_file(folder / WEIGHTS_FILE)
            checked = (
                "sha256 verified" if entry is not None and entry.hashes
                else "no registered hashes, so only the structure was checked"
            )
            typer.echo(f"{target}: ok ({parameters / 1e6:.2f}M parameters, {checked}, model sha256 {digest})")
        except Avat3rError as exc:
            failed = True
            typer.echo(f"{target}: FAILED: {exc}")
    if failed:
        raise typer.Exit(1)
