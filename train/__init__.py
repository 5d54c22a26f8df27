"""train: supervised fine-tuning on a curated dataset (``train sft`` arrives with its issue)."""
