"""`python -m train ...` and `accelerate launch -m train sft CONFIG.yaml` (several GPUs)."""
from .cli import main

main()
