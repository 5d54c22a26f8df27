"""curate: turn raw instruction and chat data into a clean SFT dataset."""
__version__ = "0.1.0"
