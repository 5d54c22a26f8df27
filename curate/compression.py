"""The codec of the Parquet files a command writes (``--compression``, a pipeline's
``compression:``). The default, zstd level 1, is the one every stage used before there was a
choice. Locks and cache keys of the next step hash a table's rows, not its bytes
(curate.pipeline.content), so the codec changes file sizes and write time, never a lock.

No third-party imports here: the command line validates a value before it loads polars.
"""
from __future__ import annotations

DEFAULT = "zstd:1"

# codec -> (polars' name, (lowest, highest) level or None, the level when none is given).
# zstd's is ours (level 1: a quarter less CPU than polars' 3 for 2% larger files);
# gzip's is zlib's own default; brotli's the parquet library's.
CODECS = {
    "zstd": ("zstd", (1, 22), 1),
    "lz4": ("lz4", None, None),
    "snappy": ("snappy", None, None),
    "gzip": ("gzip", (0, 9), 6),
    "brotli": ("brotli", (0, 11), 1),
    "none": ("uncompressed", None, None),
}
ALIASES = {"uncompressed": "none"}  # polars' and pyarrow's word for it

HELP = ("Codec of the Parquet files written: zstd (level 1), zstd:N (1-22; smaller, slower), lz4, snappy, "
        "gzip[:0-9], brotli[:0-11], none (fastest, largest). The tables' content is the same with any.")


def described() -> str:
    """The accepted values, as an error message lists them."""
    return ", ".join(f"{name}[:{lv[0]}-{lv[1]}]" if lv else name for name, (_, lv, _) in CODECS.items())


def parse(value: str | None) -> str:
    """``value`` as its canonical ``codec`` or ``codec:level`` (``zstd`` -> ``zstd:1``; None is
    the default). A value that is none of them raises ValueError with the one-line reason."""
    if value is None:
        return DEFAULT
    text = str(value).strip().lower()
    name, sep, level = text.partition(":")
    name = ALIASES.get(name, name)
    if name not in CODECS:
        import difflib  # only for a bad value: every command imports this module at start-up

        hint = difflib.get_close_matches(name, list(CODECS), n=1)
        raise ValueError(f"'{value}' is not one of {described()}" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    _, levels, default = CODECS[name]
    if not sep:
        return name if levels is None else f"{name}:{default}"
    if levels is None:
        raise ValueError(f"'{value}': {name} takes no level (give {name})")
    if not level.isdigit() or not levels[0] <= int(level) <= levels[1]:
        raise ValueError(f"'{value}': {name}'s level is a whole number from {levels[0]} to {levels[1]}")
    return f"{name}:{int(level)}"


def polars_options(value: str | None) -> dict:
    """``compression`` and ``compression_level`` for polars' ``write_parquet``."""
    name, _, level = parse(value).partition(":")
    codec = CODECS[name][0]
    return {"compression": codec, "compression_level": int(level)} if level else {"compression": codec}
