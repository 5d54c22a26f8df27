"""The ``train`` command group. Its subcommands (``train sft``) are added by the training issue."""
import click


@click.group()
def main():
    """Fine-tune a model on a curated dataset."""
