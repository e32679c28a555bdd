"""`cvae-bench backends` and `cvae-bench data`: what is installed, available and verified here."""

from __future__ import annotations

from typing import Any

import click

from cvae_bench.cli.console import ConsoleReporter
from cvae_bench.cli.options import click_options, json_option
from cvae_bench.cli.output import json_document, show_table
from cvae_bench.data.specs import DataChoice


@click.command()
@json_option
def backends(as_json: bool) -> None:
    """List registered backends: availability, framework versions, devices, modes, origin."""
    from cvae_bench.backends import registry

    infos = list(registry.all_backends().values())
    if as_json:
        entries = [
            {
                "name": info.name,
                "available": info.available,
                "versions": info.versions(),
                "devices": list(info.devices),
                "modes": list(info.modes),
                "origin": info.origin,
                "description": info.description,
                "unavailable_reason": info.unavailable_reason() or None,
            }
            for info in infos
        ]
        click.echo(json_document("backends", {"backends": entries}))
        return
    rows = [
        [
            info.name,
            "yes" if info.available else "no",
            ", ".join(f"{k} {v}" for k, v in info.versions().items()),
            ", ".join(info.devices),
            ", ".join(info.modes),
            info.origin,
            info.unavailable_reason() or info.description,
        ]
        for info in infos
    ]
    headers = ("name", "available", "framework", "devices", "modes", "origin", "notes")
    show_table("cvae-bench backends", headers, rows)


@click.group()
def data() -> None:
    """Obtain and inspect the data sets (checksummed)."""


@data.command("fetch")
@click_options(DataChoice)
def data_fetch(**declared: Any) -> None:
    """Find or download the data set, verify it and cache it."""
    from cvae_bench.data.loading import load_dataset

    choice = DataChoice(**declared)
    ds = load_dataset(choice.dataset, choice.data_path, reporter=ConsoleReporter())
    click.echo(
        f"{ds.name}: {len(ds.x_train)} train + {len(ds.x_test)} test images, checksums OK, from {ds.source} ({ds.path})"
    )


@data.command("info")
@click_options(DataChoice)
def data_info(**declared: Any) -> None:
    """Show where the data set comes from, its shapes and whether its checksums verify (no download)."""
    from cvae_bench.data.loading import dataset_info

    choice = DataChoice(**declared)
    info = dataset_info(choice.dataset, choice.data_path)
    for key, value in info.to_json().items():
        click.echo(f"{key:>12}: {value}")
