"""nbbatch: a prompt manifest in, a folder of images and a resumable ledger out."""

__version__ = "0.1.0"
