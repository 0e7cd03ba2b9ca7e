"""What batch mode can send: checked before anything is, so a job never fails on its shape.

Failover does not apply to batch jobs: each image goes to its own provider, whose batch API
must exist and take what the image needs (OpenAI's batch format has no documented way to
carry reference images, so those are refused here rather than by the API hours later).
"""

from __future__ import annotations

from nbbatch.errors import ManifestError
from nbbatch.model import Manifest
from nbbatch.providers import registry


def check_batch_mode(manifest: Manifest, display: str | None = None) -> None:
    """ManifestError for the first image a batch job could not carry; `display` is the
    manifest's name as the user typed it."""
    file = display or str(manifest.path)
    for item in manifest.items:
        spec = registry.spec(item.provider)
        where = f"prompts: {item.id!r}" + (f" (line {item.line})" if item.line else "")
        if spec.batch_module is None:
            raise ManifestError(f"provider {item.provider!r} has no batch mode: {spec.no_batch}",
                                file=file, field=where)
        if item.references and not spec.batch_references:
            raise ManifestError(
                f"reference images cannot go in a {item.provider} batch job (its batch format "
                "has no documented way to carry them): remove them, send this prompt with "
                "mode: online, or use provider gemini", file=file, field=where)
