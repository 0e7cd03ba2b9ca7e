"""The manifest: YAML (and a CSV/JSONL prompts file) in, a validated, frozen Manifest out."""

from nbbatch.manifest.loader import load_manifest
from nbbatch.manifest.overrides import apply_overrides

__all__ = ["apply_overrides", "load_manifest"]
